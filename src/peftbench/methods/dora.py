"""DoRA: LoRA with each adapted weight split into a trained magnitude and a direction
(Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from peftbench.methods import Method, MethodContext
from peftbench.methods._common import QuantizedBaseParams, lora_variant
from peftbench.methods.lora import LoraParams
from peftbench.structured import setting

if TYPE_CHECKING:  # torch loads when a method is applied
    from torch import nn


@dataclass
class DoraParams(QuantizedBaseParams, LoraParams):
    learning_rate: float = setting(
        5e-4,
        help=(
            "DoRA adds one magnitude per output feature and otherwise keeps LoRA's settings (the "
            "paper compares the two at the same rank and targets): r=8 on query, value, alpha 16, "
            "and LoRA's rate, 5e-4 (Hu et al. 2021, table 9)."
        ),
    )


def apply(model: nn.Module, params: DoraParams, context: MethodContext) -> nn.Module:
    return lora_variant(model, params, use_dora=True)


METHOD = Method(
    name="dora",
    description="DoRA: LoRA plus a trained magnitude per output feature of each adapted weight.",
    params_class=DoraParams,
    apply=apply,
)
