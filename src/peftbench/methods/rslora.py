"""rsLoRA: LoRA with the update scaled by alpha/sqrt(r) instead of alpha/r
(Kalajdzievski 2023, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA")."""

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
class RsLoraParams(QuantizedBaseParams, LoraParams):
    learning_rate: float = setting(
        5e-4,
        help=(
            "Only the scaling differs from LoRA, so every other setting is LoRA's (r=8 on query, "
            "value, alpha 16, 5e-4 from Hu et al. 2021, table 9). At r=8 the scale is 16/sqrt(8) ="
            " 5.7 instead of LoRA's 2: rsLoRA's point is that the update no longer shrinks as r "
            "grows."
        ),
    )


def apply(model: nn.Module, params: RsLoraParams, context: MethodContext) -> nn.Module:
    return lora_variant(model, params, use_rslora=True)


METHOD = Method(
    name="rslora",
    description="rsLoRA: LoRA scaled by alpha/sqrt(r), stable across ranks.",
    params_class=RsLoraParams,
    apply=apply,
)
