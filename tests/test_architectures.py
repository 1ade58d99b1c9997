"""The shipped architecture files are the real models' shapes.

They let `plan` and `model.init: random` work offline; they were written without Hub access, so
each is checked here against the model's published parameter count (its model card / the Hub's
safetensors total). Thirteen exact totals cannot all match by accident: a wrong width, depth,
vocabulary, head count or tying changes the total. Built on the meta device (no memory).
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from peftbench.models import ARCHITECTURES_DIR

# The base model (encoders: without a task head, with the pooler where the model has one;
# decoders: the causal-LM model, tied embeddings counted once).
PUBLISHED_PARAMETERS = {
    "roberta-base": 124_645_632,
    "bert-base-uncased": 109_482_240,
    "distilbert-base-uncased": 66_362_880,
    "albert-base-v2": 11_683_584,
    "gpt2": 124_439_808,
    "FacebookAI/xlm-roberta-base": 278_043_648,
    "google/electra-base-discriminator": 108_891_648,
    "microsoft/deberta-v3-base": 183_831_552,
    "answerdotai/ModernBERT-base": 149_014_272,
    "Qwen/Qwen2.5-0.5B": 494_032_768,
    "meta-llama/Llama-3.2-1B": 1_235_814_400,
    "google/gemma-2b": 2_506_172_416,
    "mistralai/Mistral-7B-v0.1": 7_241_732_096,
}


def test_every_shipped_file_has_a_published_count() -> None:
    shipped = {
        path.relative_to(ARCHITECTURES_DIR).with_suffix("").as_posix()
        for path in ARCHITECTURES_DIR.rglob("*.json")
    }
    assert shipped == set(PUBLISHED_PARAMETERS)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETERS))
def test_shipped_architecture_has_the_published_parameter_count(name: str) -> None:
    raw = json.loads((ARCHITECTURES_DIR / f"{name}.json").read_text(encoding="utf-8"))
    config = AutoConfig.for_model(**raw)
    decoder = any(a.endswith("ForCausalLM") for a in raw.get("architectures", []))
    with torch.device("meta"):
        model = (AutoModelForCausalLM if decoder else AutoModel).from_config(config)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMETERS[name]
