"""Speed and memory switches: each runs on the tiny model and changes no result it should not."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import drop_a_ctrl_c, loop_state, no_dropout

from peftbench.config import DataConfig, ModelConfig, TrainingConfig, reference_pipeline
from peftbench.data import collate, prepare_data
from peftbench.interrupts import sigterm_as_interrupt
from peftbench.loop import evaluate, micro_batches, train_epoch
from peftbench.methods import MethodContext, get_method
from peftbench.models import load_model, load_tokenizer
from peftbench.run_spec import RunSpec
from peftbench.serving import measure_serving
from peftbench.train import execute_run, set_seed, warmup_steps

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def prepared(tiny_roberta: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_roberta)))
    cache = tmp_path_factory.mktemp("cache")
    data = DataConfig(dataset=str(tiny_dataset), train_size=64, test_size=32)
    return prepare_data(data, tokenizer, "tiny", 64, cache)


def _run(tiny_roberta: Path, prepared, tmp_path: Path, **training) -> dict:
    method = get_method("lora")
    spec = RunSpec(
        run_id="lora-seed0",
        label="lora",
        method="lora",
        params=method.params_class(learning_rate=5e-3),
        seed=0,
        experiment="switches",
        config_hash="h",
        model=ModelConfig(name=str(tiny_roberta)),
        training=TrainingConfig(
            epochs=1, train_batch_size=16, eval_batch_size=16, max_length=64, **training
        ),
        data_cache=str(prepared[1]),
        run_dir=str(tmp_path / "run"),
    )
    return execute_run(spec)


@pytest.mark.parametrize(
    "switch",
    [
        {"pipeline": "reference"},
        {"gradient_accumulation_steps": 4},
        {"gradient_checkpointing": True},
        {"attention": "eager"},
        {"attention_dropout": "model"},
        {"attention_dropout": 0.05},
        {"precision": "bf16"},
        {"group_by_length": False, "sort_eval_by_length": False},
    ],
    ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()),
)
def test_every_switch_runs(tiny_roberta: Path, prepared, tmp_path: Path, switch: dict) -> None:
    training = switch
    if switch.get("pipeline") == "reference":
        training = dataclasses.asdict(reference_pipeline(TrainingConfig(**switch)))
        training = {
            k: training[k]
            for k in (
                "pipeline",
                "padding",
                "precision",
                "group_by_length",
                "sort_eval_by_length",
                "compile",
                "attention_dropout",
            )
        }
    record = _run(tiny_roberta, prepared, tmp_path, **training)
    assert record["status"] == "success"
    assert 0 <= record["metrics"]["accuracy"] <= 1
    expected_precision = (
        "bf16" if switch.get("precision") == "bf16" else record["train_info"]["precision"]
    )
    assert record["train_info"]["precision"] == expected_precision
    # The tiny RoBERTa's own attention dropout is 0.1; the default on CPU + SDPA is none.
    expected_dropout = {"model": 0.1, 0.05: 0.05}.get(training.get("attention_dropout"), 0.0)
    if switch.get("attention") == "eager":
        expected_dropout = 0.1
    assert record["train_info"]["attention_dropout"] == pytest.approx(expected_dropout)


def test_torch_compile_runs(tiny_roberta: Path, prepared, tmp_path: Path) -> None:
    record = _run(tiny_roberta, prepared, tmp_path, compile=True)
    assert record["status"] == "success"


def test_reference_pipeline_is_the_studys_way() -> None:
    reference = reference_pipeline(TrainingConfig(pipeline="reference"))
    assert reference.padding == "max_length"
    assert reference.precision == "fp32"
    assert not reference.group_by_length and not reference.sort_eval_by_length
    assert reference.attention_dropout == "model"


@pytest.mark.parametrize("choice", ["auto", "model", 0.05])
def test_attention_dropout_reaches_attention_only(tiny_roberta: Path, choice) -> None:
    model = load_model(ModelConfig(name=str(tiny_roberta)), 2, CPU, attention_dropout=choice)
    expected = {"auto": 0.0, "model": 0.1, 0.05: 0.05}[choice]
    attention = [m for n, m in model.named_modules() if n.endswith("attention.self.dropout")]
    others = [m for n, m in model.named_modules() if n.endswith("dropout") and m not in attention]
    assert attention and all(m.p == pytest.approx(expected) for m in attention)
    assert others and all(m.p == pytest.approx(0.1) for m in others)  # hidden dropout kept
    # With the other dropouts off, training-mode outputs repeat exactly only without it.
    for module in others:
        module.p = 0.0
    model.train()
    ids = torch.randint(5, 100, (2, 24))
    first, second = model(input_ids=ids).logits, model(input_ids=ids).logits
    assert torch.equal(first, second) == (expected == 0.0)


def test_attention_dropout_auto_keeps_the_model_value_with_eager_attention(
    tiny_roberta: Path,
) -> None:
    model = load_model(
        ModelConfig(name=str(tiny_roberta)), 2, CPU, attention="eager", attention_dropout="auto"
    )
    assert model.config.attention_probs_dropout_prob == pytest.approx(0.1)


def test_padding_and_sorting_change_no_prediction(tiny_roberta: Path, prepared) -> None:
    data = prepared[0]
    set_seed(0)
    model = load_model(ModelConfig(name=str(tiny_roberta)), 2, CPU)
    full = get_method("full")
    results = []
    for training in (
        TrainingConfig(eval_batch_size=8, max_length=64),
        reference_pipeline(TrainingConfig(eval_batch_size=8, max_length=64)),
    ):
        state = loop_state(model, data, training, full, full.params_class())
        results.append(evaluate(state, data.test))
    (fast_metrics, fast_predictions), (ref_metrics, ref_predictions) = results
    assert fast_predictions == ref_predictions
    assert fast_metrics["loss"] == pytest.approx(ref_metrics["loss"], rel=1e-5)


def test_micro_batches_cover_the_batch() -> None:
    parts = micro_batches(list(range(16)), 3)
    assert [len(p) for p in parts] == [6, 6, 4]
    assert sum(parts, []) == list(range(16))


def _one_epoch_state(tiny_roberta: Path, data, **training) -> dict[str, torch.Tensor]:
    set_seed(0)
    method = get_method("lora")
    params = method.params_class(learning_rate=5e-3, dropout=0.0)
    base = load_model(ModelConfig(name=str(tiny_roberta)), 2, CPU)
    if training.pop("checkpointing", False):
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = method.apply(base, params, MethodContext(total_steps=4))
    no_dropout(model)
    config = TrainingConfig(train_batch_size=16, max_length=64, **training)
    train_epoch(loop_state(model, data, config, method, params), 1)
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("variant", [{"gradient_accumulation_steps": 4}, {"checkpointing": True}])
def test_accumulation_and_checkpointing_train_the_same_weights(
    tiny_roberta: Path, prepared, variant: dict
) -> None:
    data = prepared[0]
    plain = _one_epoch_state(tiny_roberta, data)
    other = _one_epoch_state(tiny_roberta, data, **variant)
    assert plain.keys() == other.keys()
    for name in plain:
        torch.testing.assert_close(other[name], plain[name], rtol=1e-4, atol=1e-5)


def test_eager_and_sdpa_attention_agree(tiny_roberta: Path, prepared) -> None:
    data = prepared[0]
    batch = collate(data.test, list(range(8)), data.pad_token_id, None)
    batch.pop("labels")
    logits = []
    for attention in ("sdpa", "eager"):
        set_seed(0)
        model = load_model(ModelConfig(name=str(tiny_roberta)), 2, CPU, attention=attention).eval()
        with torch.no_grad():
            logits.append(model(**batch).logits)
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-4, atol=1e-5)


def _lora_loop_state(tiny_roberta: Path, data) -> tuple[torch.nn.Module, Any]:
    """LoRA (seed 0) on the tiny model, in a RunState of 4 steps of 16 per epoch."""
    method = get_method("lora")
    params = method.params_class(learning_rate=5e-3)
    set_seed(0)
    model = method.apply(
        load_model(ModelConfig(name=str(tiny_roberta)), 2, CPU), params, MethodContext(4)
    )
    training = TrainingConfig(train_batch_size=16, max_length=64)
    return model, loop_state(model, data, training, method, params)


@pytest.mark.usefixtures("ctrl_c_as_in_a_terminal")
def test_a_dropped_ctrl_c_stops_training_evaluation_and_serving_at_the_next_batch(
    tiny_roberta: Path, prepared
) -> None:
    data = prepared[0]
    model, state = _lora_loop_state(tiny_roberta, data)
    with sigterm_as_interrupt():
        assert drop_a_ctrl_c()  # Python printed and dropped it
        with pytest.raises(KeyboardInterrupt):
            train_epoch(state, 1)
        with pytest.raises(KeyboardInterrupt):
            evaluate(state, data.test)
        with pytest.raises(KeyboardInterrupt):
            measure_serving(model, data.test, 1, 16, CPU, contextlib.nullcontext())
    assert state.optimizer.state == {}  # not one step was taken


def test_steps_the_fp16_scaler_skips_leave_the_schedule_where_it_was(
    tiny_roberta: Path, prepared
) -> None:
    model, state = _lora_loop_state(tiny_roberta, prepared[0])
    # fp16 as on a GPU: an overflowing gradient (here made so) makes the scaler skip the step.
    state.scaler = torch.amp.GradScaler("cpu")
    weight = next(p for p in model.parameters() if p.requires_grad)
    weight.register_hook(lambda grad: grad * float("inf"))
    train_epoch(state, 1)
    assert state.progress.totals["train_steps"] == 4
    assert state.optimizer.state == {}  # every step was skipped
    assert state.scaler.get_scale() == 2.0**16 / 2**4  # the scale halved at each
    assert state.scheduler.last_epoch == 0  # and the learning rate did not move on


@pytest.mark.parametrize(
    ("ratio", "total", "steps"), [(0.0, 564, 0), (0.06, 564, 34), (0.1, 15, 2), (0.01, 20, 1)]
)
def test_warmup_is_the_ratio_of_the_steps_rounded_up(ratio: float, total: int, steps: int) -> None:
    # As Hugging Face's Trainer: 0.06 x 564 = 33.84 -> 34; a ratio above 0 warms up at least 1.
    assert warmup_steps(ratio, total) == steps
