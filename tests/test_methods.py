"""Each method trains (its loss falls), saves and reloads with identical logits, and has the
trainable-parameter count that the reference study reports at roberta-base shapes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from peftbench.config import DataConfig, ModelConfig, TrainingConfig
from peftbench.data import collate, prepare_data
from peftbench.methods import MethodContext, get_method, method_names
from peftbench.models import (
    build_random_model,
    count_parameters,
    load_architecture,
    load_model,
    load_tokenizer,
    load_trained,
)
from peftbench.train import set_seed, train_epoch

STUDY_COUNTS = {"full": 124_647_170, "lora": 887_042, "qlora": 887_042, "ia3": 656_642}
CPU = torch.device("cpu")


@pytest.mark.parametrize("name", sorted(STUDY_COUNTS))
def test_trainable_parameters_at_roberta_base_shapes(name: str) -> None:
    # Hand count for LoRA r=8 on query, value: 12 layers x 2 matrices x (768x8 + 8x768)
    # = 294,912, plus the RoBERTa head (768x768 + 768 + 768x2 + 2 = 592,130).
    assert 12 * 2 * (768 * 8 + 8 * 768) + (768 * 768 + 768 + 768 * 2 + 2) == 887_042
    architecture = load_architecture(ModelConfig(name="roberta-base", init="random"), 2)
    method = get_method(name)
    model = method.apply(
        build_random_model(architecture), method.params_class(), MethodContext(total_steps=10)
    )
    trainable, total = count_parameters(model)
    assert trainable == STUDY_COUNTS[name]
    assert total >= 124_647_170


def _setup(model_dir: Path, data_dir: Path, tmp_path: Path, method_name: str):
    method = get_method(method_name)
    params = method.params_class(learning_rate={"full": 1e-3, "ia3": 3e-2}.get(method_name, 1e-2))
    model_config = ModelConfig(name=str(model_dir))
    tokenizer = load_tokenizer(model_config)
    data, _ = prepare_data(
        DataConfig(dataset=str(data_dir), train_size=128, test_size=32),
        tokenizer,
        str(model_dir),
        64,
        tmp_path / "cache",
    )
    set_seed(0)
    quantize = params if method.uses_4bit_base(params) else None
    model = method.apply(
        load_model(model_config, 2, CPU, quantize), params, MethodContext(total_steps=48)
    )
    return method, params, model_config, model, data


@pytest.mark.parametrize("family", ["tiny_roberta", "tiny_bert"])
@pytest.mark.parametrize("method_name", ["full", "lora", "qlora", "ia3"])
def test_method_trains_saves_and_reloads(
    request: pytest.FixtureRequest,
    tiny_dataset: Path,
    tmp_path: Path,
    family: str,
    method_name: str,
) -> None:
    model_dir = request.getfixturevalue(family)
    method, params, model_config, model, data = _setup(
        model_dir, tiny_dataset, tmp_path, method_name
    )
    trainable, total = count_parameters(model)
    assert 0 < trainable <= total
    if method_name != "full":
        assert trainable < total / 2

    training = TrainingConfig(epochs=1, train_batch_size=16, max_length=64)
    optimizer = torch.optim.AdamW(method.optimizer_groups(model, params), lr=params.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    losses = [
        train_epoch(
            model,
            optimizer,
            scheduler,
            scaler,
            data,
            training,
            CPU,
            "fp32",
            0,
            epoch,
            method,
            (epoch - 1) * 8,
        )[0]
        for epoch in range(1, 7)
    ]
    assert all(math.isfinite(loss) for loss in losses)
    assert min(losses[-2:]) < losses[0] - 0.02, f"loss did not fall: {losses}"

    saved = tmp_path / "saved"
    model.save_pretrained(saved)
    quantize = params if method.uses_4bit_base(params) else None
    reloaded = load_trained(model_config, 2, saved, CPU, quantize)
    batch = collate(data.test, list(range(8)), data.pad_token_id, None)
    batch.pop("labels")
    model.eval()
    reloaded.eval()
    with torch.no_grad():
        expected = model(**batch).logits
        actual = reloaded(**batch).logits
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_every_registered_method_has_documented_defaults() -> None:
    for name in method_names():
        params = get_method(name).params_class()
        assert params.learning_rate > 0
