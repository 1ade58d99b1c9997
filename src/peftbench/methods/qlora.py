"""QLoRA: LoRA adapters on a base model whose weights are stored in 4-bit NF4 (Dettmers et al.)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from peftbench.methods import Method, MethodContext
from peftbench.methods._common import FourBitSettings
from peftbench.methods.lora import LoraParams
from peftbench.methods.lora import apply as apply_lora

if TYPE_CHECKING:
    from torch import nn


@dataclass
class QLoraParams(FourBitSettings, LoraParams):
    """LoRA's settings, then how the 4-bit base is stored (always 4-bit: no `base` choice)."""


def apply(model: nn.Module, params: QLoraParams, context: MethodContext) -> nn.Module:
    # The 4-bit base is loaded by peftbench.models (Method.quantized_base); the adapter is LoRA.
    return apply_lora(model, params, context)


METHOD = Method(
    name="qlora",
    description="QLoRA: LoRA adapters on a 4-bit NF4 base (bitsandbytes).",
    params_class=QLoraParams,
    apply=apply,
    quantized_base=True,
)
