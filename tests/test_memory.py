"""Tensor memory by component (peftbench.memory) and its prediction on fake tensors
(peftbench.memory_plan): the components add up, each lands where it belongs, measuring does not
change the run, and the prediction matches the measurement for every registered method."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import loop_state
from test_methods import ALL_METHODS

from peftbench.config import DataConfig, ModelConfig, TrainingConfig
from peftbench.data import PreparedData, prepare_data
from peftbench.loop import evaluate, train_epoch
from peftbench.memory import COMPONENTS, MIB, TensorMemoryTracker
from peftbench.memory_plan import StepShape, largest_batch, simulate_peaks
from peftbench.methods import MethodContext, get_method
from peftbench.models import load_architecture, load_model, load_tokenizer
from peftbench.train import set_seed

CPU = torch.device("cpu")
# Every batch padded to max_length, so that each step has the shape the prediction assumes.
TRAINING = TrainingConfig(
    epochs=1, train_batch_size=16, eval_batch_size=32, max_length=64, padding="max_length"
)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def prepare_tiny(model_dir: Path, data_dir: Path, cache_dir: Path) -> PreparedData:
    model_config = ModelConfig(name=str(model_dir))
    data, _ = prepare_data(
        DataConfig(dataset=str(data_dir), train_size=48, test_size=32),
        load_tokenizer(model_config),
        str(model_dir),
        TRAINING.max_length,
        cache_dir,
    )
    return data


@pytest.fixture(scope="module")
def prepared(tiny_roberta: Path, tiny_dataset: Path, tmp_path_factory: Any) -> PreparedData:
    return prepare_tiny(tiny_roberta, tiny_dataset, tmp_path_factory.mktemp("cache"))


def _model(model_dir: Path, name: str) -> tuple[Any, Any, torch.nn.Module]:
    method = get_method(name)
    params = method.params_class()
    set_seed(0)
    base = load_model(
        ModelConfig(name=str(model_dir)),
        2,
        CPU,
        method.quantization(params),
        attention_dropout=TRAINING.attention_dropout,
    )
    return method, params, method.apply(base, params, MethodContext(total_steps=3))


def _measure(model_dir: Path, name: str, data: PreparedData) -> dict[str, dict[str, float]]:
    """Peaks of one real epoch and evaluation, through the training loop runs use."""
    method, params, model = _model(model_dir, name)
    optimizer = torch.optim.AdamW(method.optimizer_groups(model, params), lr=params.learning_rate)
    state = loop_state(model, data, TRAINING, method, params, optimizer)
    tracker = TensorMemoryTracker(model, optimizer)
    with tracker.measure("train"):
        train_epoch(state, 1)
    with tracker.measure("eval"):
        evaluate(state, data.test)
    return tracker.peaks()


def test_components_sum_to_the_total_and_land_where_they_belong(tiny_roberta: Path) -> None:
    method, params, model = _model(tiny_roberta, "lora")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    tracker = TensorMemoryTracker(model, optimizer)
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    trainable_bytes = sum(p.numel() * p.element_size() for p in trainable)
    batch = {"input_ids": torch.full((4, 16), 5), "labels": torch.tensor([0, 1, 0, 1])}
    with tracker.measure("train"):
        loss = model(**batch).loss
        assert tracker.totals["activations"] > 0  # saved for backward, not yet freed
        loss.backward()
        # Gradients exist for the trained tensors only, and nothing else is filed under them.
        assert all(p.grad is None for p in frozen)
        assert tracker.totals["gradients"] == trainable_bytes
        optimizer.step()
        assert tracker.totals["optimizer_state"] >= 2 * trainable_bytes  # AdamW's two moments
        optimizer.zero_grad(set_to_none=True)
        assert tracker.totals["gradients"] == 0
    assert tracker.totals["trainable_weights"] == trainable_bytes
    assert tracker.totals["frozen_weights"] >= sum(p.numel() * 4 for p in frozen)
    for phase in tracker.peaks().values():
        parts = sum(phase[name] for name in COMPONENTS)
        assert parts == pytest.approx(phase["total_mib"], abs=1e-9)


def test_4bit_weights_count_at_their_stored_size(tiny_roberta: Path) -> None:
    import bitsandbytes as bnb

    _, _, lora = _model(tiny_roberta, "lora")
    _, _, qlora = _model(tiny_roberta, "qlora")
    full_precision = TensorMemoryTracker(lora).totals["frozen_weights"]
    four_bit = TensorMemoryTracker(qlora).totals["frozen_weights"]
    layers = [m for m in qlora.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers
    logical = sum(m.weight.quant_state.shape.numel() for m in layers)
    packed = sum(m.weight.untyped_storage().nbytes() for m in layers)
    assert packed == logical // 2  # two 4-bit values per byte
    # Each quantised weight stores a half byte per value instead of four bytes, plus its
    # scales (a byte per 64 values, double-quantised) and code tables (at most 2 KiB a layer).
    saved = full_precision - four_bit
    assert logical * 4 - packed - logical // 64 - 2048 * len(layers) < saved < logical * 4 - packed


def test_measuring_does_not_change_the_run(tiny_roberta: Path, prepared: PreparedData) -> None:
    def train(tracked: bool) -> list[torch.Tensor]:
        method, params, model = _model(tiny_roberta, "lora")
        optimizer = torch.optim.AdamW(method.optimizer_groups(model, params), lr=1e-2)
        state = loop_state(model, prepared, TRAINING, method, params, optimizer)
        tracker = TensorMemoryTracker(model, optimizer)
        context = (
            tracker.measure("train")
            if tracked
            else torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t)
        )
        with context:
            train_epoch(state, 1)
        return [p.detach().clone() for p in model.parameters() if p.requires_grad] + [
            torch.rand(3)  # the global RNG is where it would be without measuring
        ]

    for plain, measured in zip(train(False), train(True), strict=True):
        assert torch.equal(plain, measured)


@pytest.mark.parametrize("name", ALL_METHODS)
def test_prediction_within_ten_percent_of_the_measured_peak(
    tiny_roberta: Path, prepared: PreparedData, name: str
) -> None:
    measured = _measure(tiny_roberta, name, prepared)
    method = get_method(name)
    architecture = load_architecture(ModelConfig(name=str(tiny_roberta)), 2)
    shape = StepShape(TRAINING.train_batch_size, TRAINING.eval_batch_size, TRAINING.max_length)
    predicted = simulate_peaks(architecture, method, method.params_class(), TRAINING, shape, "fp32")
    for phase in ("train", "eval"):
        real, guess = measured[phase]["total_mib"], predicted[phase]["total_mib"]
        assert abs(guess - real) <= 0.10 * real, f"{phase}: predicted {guess:.3f}, real {real:.3f}"
    # Weights and optimiser state do not depend on the data: they match to the byte.
    for component in ("frozen_weights", "trainable_weights", "optimizer_state"):
        assert predicted["train"][component] == pytest.approx(measured["train"][component])


def test_largest_batch_from_two_points() -> None:
    # 100 MiB fixed + 10 MiB per example: 1,000 MiB holds 90 examples, 105 MiB none.
    assert largest_batch(180.0, 260.0, 8, 16, 1000.0) == 90
    assert largest_batch(180.0, 260.0, 8, 16, 105.0) is None
    assert MIB == 2**20
