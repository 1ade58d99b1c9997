"""FLOPs counts against hand computation and torch's FLOP counter; the peak-FLOP/s cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForSequenceClassification, BertConfig, RobertaConfig

from peftbench import flops
from peftbench.config import ModelConfig
from peftbench.data import TokenizedSplit, collate
from peftbench.flops import (
    eval_flops,
    flops_summary,
    mfu,
    model_shape,
    peak_flops,
    real_lengths,
    train_flops,
)
from peftbench.methods import MethodContext, get_method, method_names
from peftbench.models import build_random_model, load_architecture, load_model

# Tiny encoder: 2 layers, hidden d=64, intermediate 128, 4 heads, 2 labels.
L, D, FF = 2, 64, 128
# Per layer: query, key, value, attention output (4·d·d) + feed-forward (d·ff + ff·d).
BODY = L * (4 * D * D + 2 * D * FF)  # 65,536
# Per sequence: RoBERTa's classifier.dense + out_proj, or BERT's pooler.dense + classifier.
HEAD = D * D + D * 2  # 4,224
# LoRA r=8 on query and value: A (d·8) + B (8·d) per matrix, 2 matrices per layer.
LORA = L * 2 * (D * 8 + 8 * D)  # 4,096
LENGTHS = [5, 9, 16]


def tiny_model(config_class: type, method: str = "full", layers: int = L) -> torch.nn.Module:
    """The tiny encoder with eager attention (matmuls torch's FLOP counter sees), `method` on."""
    config = config_class(
        vocab_size=100,
        hidden_size=D,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=FF,
        max_position_embeddings=64,
        num_labels=2,
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
    chosen = get_method(method)
    return chosen.apply(model, chosen.params_class(), MethodContext(total_steps=1))


def attention(s: int) -> int:
    """Forward FLOPs of Q·K^T and P·V over a sequence of s tokens: 2 matmuls of 2·s·s·d, L times."""
    return L * 2 * (2 * s * s * D)


@pytest.mark.parametrize("config_class", [RobertaConfig, BertConfig])
def test_full_fine_tuning_matches_hand_count(config_class: type) -> None:
    shape = model_shape(tiny_model(config_class))
    assert (shape.frozen, shape.trainable, shape.head_frozen, shape.head_trainable) == (
        0,
        BODY,
        0,
        HEAD,
    )
    # 6 FLOPs per weight per token, attention x3, the head 6 per weight once per sequence.
    train = sum(6 * BODY * s + 3 * attention(s) + 6 * HEAD for s in LENGTHS)
    assert train == 393_216 * 30 + 1_536 * (25 + 81 + 256) + 3 * 25_344 == 12_428_544
    assert train_flops(shape, LENGTHS) == train
    forward = sum(2 * BODY * s + attention(s) + 2 * HEAD for s in LENGTHS)
    assert eval_flops(shape, LENGTHS) == forward == 4_142_848


@pytest.mark.parametrize("config_class", [RobertaConfig, BertConfig])
def test_lora_matches_hand_count(config_class: type) -> None:
    shape = model_shape(tiny_model(config_class, "lora"))
    # The head (and BERT's pooler) train in full next to the adapter; PEFT's frozen copy of
    # them (original_module) does not run and is not counted.
    assert (shape.frozen, shape.trainable, shape.head_frozen, shape.head_trainable) == (
        BODY,
        LORA,
        0,
        HEAD,
    )
    # Frozen: forward + input gradient (4); trainable: + weight gradient (6).
    train = sum((4 * BODY + 6 * LORA) * s + 3 * attention(s) + 6 * HEAD for s in LENGTHS)
    assert train == 286_720 * 30 + 1_536 * 362 + 3 * 25_344 == 9_233_664
    assert train_flops(shape, LENGTHS) == train
    forward = sum(2 * (BODY + LORA) * s + attention(s) + 2 * HEAD for s in LENGTHS)
    assert eval_flops(shape, LENGTHS) == forward == 4_388_608


def test_head_only_has_no_backward_below_the_head() -> None:
    shape = model_shape(tiny_model(BertConfig, "head_only"))
    assert not shape.body_backward
    expected = sum(2 * BODY * s + attention(s) + 6 * HEAD for s in LENGTHS)
    assert train_flops(shape, LENGTHS) == expected


def _counted(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> int:
    """torch's count of one forward + backward (it sees matmuls only)."""
    with FlopCounterMode(display=False) as counter:
        model(**batch).loss.backward()
    return counter.get_total_flops()


@pytest.mark.parametrize("method", ["full", "lora", "head_only"])
def test_agrees_with_torch_flop_counter(method: str) -> None:
    model = tiny_model(RobertaConfig, method)
    batch_size, s = 4, 16
    batch = {
        "input_ids": torch.randint(3, 100, (batch_size, s)),
        "labels": torch.zeros(batch_size, dtype=torch.long),
    }
    counted = _counted(model, batch)
    ours = train_flops(model_shape(model), [s] * batch_size)
    # Where we assume more backward than autograd runs. LoRA: nothing trains below layer 0,
    # so its frozen query/key/value (and lora_A) need no input gradient, nor the keys of its
    # attention scores. (We count them, as for every layer: an overcount of ~1/L of the body's
    # input gradients, 1% at roberta-base shapes.) Head only: the classifier's dense layer
    # needs no input gradient. Full fine-tuning: none.
    skipped = {
        "full": 0,
        "lora": batch_size * (s * 2 * (3 * D * D + 2 * D * 8) + 2 * s * s * D),
        "head_only": batch_size * 2 * D * D,
    }[method]
    assert counted == pytest.approx(ours - skipped, rel=0.01)
    assert counted == pytest.approx(ours, rel=0.11)


@pytest.mark.parametrize("method", method_names())
def test_every_method_within_5_percent_of_torch_flop_counter(method: str) -> None:
    # 6 layers, so that the overcount of the first layer's input gradients is ~1/6 of them (at
    # most 4% here; ~1% at roberta-base's 12 layers); 128 tokens a batch, so that what adapters
    # compute once per batch (LoHa's delta weight, P-tuning's prompt encoder), which we leave
    # out, stays small. A new method whose FLOPs we miss fails here.
    model = tiny_model(RobertaConfig, method, layers=6)
    model.train()  # DoRA runs its base weight a second time only in training
    batch_size, s = 4, 32
    batch = {
        "input_ids": torch.randint(3, 100, (batch_size, s)),
        "attention_mask": torch.ones(batch_size, s, dtype=torch.long),
        "labels": torch.zeros(batch_size, dtype=torch.long),
    }
    ours = train_flops(model_shape(model), [s] * batch_size)
    assert _counted(model, batch) == pytest.approx(ours, rel=0.05)


def test_padding_is_not_counted() -> None:
    split = TokenizedSplit(
        input_ids=[list(range(3, 3 + s)) for s in LENGTHS], labels=[0, 1, 0], example_ids=[0, 1, 2]
    )
    shape = model_shape(tiny_model(RobertaConfig))
    dynamic = collate(split, [0, 1, 2], pad_token_id=1, pad_to=None)
    padded = collate(split, [0, 1, 2], pad_token_id=1, pad_to=32)
    assert dynamic["input_ids"].shape[1] == 16 and padded["input_ids"].shape[1] == 32
    assert real_lengths(dynamic["attention_mask"]) == real_lengths(padded["attention_mask"])
    assert train_flops(shape, real_lengths(padded["attention_mask"])) == 12_428_544


def test_4bit_base_counts_unpacked_weights(tiny_roberta: Path) -> None:
    pytest.importorskip("bitsandbytes")
    method = get_method("qlora")
    params = method.params_class()
    try:
        base = load_model(
            ModelConfig(name=str(tiny_roberta)), 2, torch.device("cpu"), method.quantization(params)
        )
    except Exception as exc:  # noqa: BLE001 - bitsandbytes without a CPU backend here
        pytest.skip(f"bitsandbytes 4-bit does not load on this CPU: {exc}")
    model = method.apply(base, params, MethodContext(total_steps=1))
    assert any(type(p).__name__ == "Params4bit" for p in model.parameters())
    shape = model_shape(model)
    assert (shape.frozen, shape.trainable, shape.head_trainable) == (BODY, LORA, HEAD)


def test_roberta_base_shapes() -> None:
    architecture = load_architecture(ModelConfig(name="roberta-base", init="random"), 2)
    shapes = {}
    for name in ("full", "lora"):
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            model = build_random_model(architecture)
        method = get_method(name)
        shapes[name] = model_shape(
            method.apply(model, method.params_class(), MethodContext(total_steps=1))
        )
    full, lora = shapes["full"], shapes["lora"]
    # 12 layers x (4 x 768² + 2 x 768 x 3072) + head (768² + 768 x 2): 85.5M.
    assert full.trainable == 12 * (4 * 768**2 + 2 * 768 * 3072) == 84_934_656
    assert full.head_trainable == 768**2 + 768 * 2 == 591_360
    assert full.trainable + full.head_trainable == 85_526_016
    assert lora.trainable == 12 * 2 * (768 * 8 + 8 * 768) == 294_912
    per_token_full = train_flops(full, [512]) / 512
    per_token_lora = train_flops(lora, [512]) / 512
    # 6N + 12·L·s·d + 6·head/s; 4N + 6·N_lora + 12·L·s·d + 6·head/s.
    assert per_token_full == 566_237_970 == pytest.approx(570e6, rel=0.02)
    assert per_token_lora == 398_138_130 == pytest.approx(400e6, rel=0.02)


def test_summary_and_mfu() -> None:
    shape = model_shape(tiny_model(RobertaConfig))
    peak = flops.PeakFlops(1e9, "test", datasheet=2e9)
    summary = flops_summary(shape, LENGTHS, 3, LENGTHS, 0.5, peak, eval_time_s=0.25)
    assert summary["train_flops"] == 3 * 12_428_544
    assert summary["train_tokens"] == 90
    assert summary["train_flops_per_token"] == pytest.approx(12_428_544 / 30)
    assert summary["eval_flops"] == 3 * 4_142_848
    assert summary["mfu"] == pytest.approx(3 * 12_428_544 / 0.5 / 1e9)
    assert summary["mfu_datasheet"] == pytest.approx(summary["mfu"] / 2)
    assert summary["eval_mfu"] == pytest.approx(3 * 4_142_848 / 0.25 / 1e9)
    json.dumps(summary)
    assert mfu(1e12, 2.0, 1e12) == 0.5
    with pytest.raises(ValueError):
        mfu(1.0, 0.0, 1.0)


def test_a_run_faster_than_the_peak_gets_no_mfu_and_the_peak_is_measured_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peak measured on a busy machine is too low: a run that beats it gets no MFU (with the
    reason), and forgetting the cached peak makes the next run measure it again."""
    shape = model_shape(tiny_model(RobertaConfig))
    slow_peak = flops.PeakFlops(1e6, "measured while busy")
    summary = flops_summary(shape, LENGTHS, 3, LENGTHS, 0.5, slow_peak, eval_time_s=0.25)
    assert summary["mfu"] is None and summary["eval_mfu"] is None
    assert "measured while the machine was busy" in summary["mfu_unavailable_because"]
    fine = flops_summary(shape, LENGTHS, 3, LENGTHS, 0.5, flops.PeakFlops(1e12, "ok"))
    assert fine["mfu"] > 0 and "mfu_unavailable_because" not in fine

    calls = []
    monkeypatch.setattr(flops, "_measure_matmul", lambda *args: calls.append(args) or 5e9)
    monkeypatch.setenv("PEFTBENCH_CACHE_DIR", str(tmp_path))
    cpu = torch.device("cpu")
    peak_flops(cpu)
    peak_flops(cpu)
    assert len(calls) == 1
    flops.forget_peak_flops(cpu, torch.float32)
    peak_flops(cpu)
    assert len(calls) == 2


def test_peak_flops_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    measure = flops._measure_matmul

    def counting(*args: object) -> float:
        calls.append(args)
        return measure(*args)

    monkeypatch.setattr(flops, "_measure_matmul", counting)
    monkeypatch.setenv("PEFTBENCH_CACHE_DIR", str(tmp_path))
    cpu = torch.device("cpu")
    first = peak_flops(cpu, size=128, repeats=2)
    cache_file = tmp_path / "peak_flops.json"
    assert cache_file.exists() and len(calls) == 1
    assert first.flops > 1e6 and first.source.startswith("measured: 128^3 fp32 matmul")
    assert f"{torch.get_num_threads()} threads" in first.source
    assert peak_flops(cpu, size=128, repeats=2) == first
    assert len(calls) == 1  # reused, not measured again
    peak_flops(cpu, torch.bfloat16, size=128, repeats=1)  # another key: measured
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        peak_flops(cpu, size=128, repeats=1)
    finally:
        torch.set_num_threads(threads)
    assert len(calls) == 3
    assert len(json.loads(cache_file.read_text())) == 3
    # An explicit path wins over the environment.
    other = tmp_path / "elsewhere" / "peak.json"
    peak_flops(cpu, size=128, repeats=1, cache_file=other)
    assert other.exists() and len(calls) == 4
