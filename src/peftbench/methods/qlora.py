"""QLoRA: LoRA adapters on a base model whose weights are stored in 4-bit NF4 (Dettmers et al.)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from peftbench.methods import Method, MethodContext
from peftbench.methods.lora import LoraParams
from peftbench.methods.lora import apply as apply_lora


@dataclass
class QLoraParams(LoraParams):
    # The QLoRA paper's storage type and double quantisation of the scales.
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    # Dtype of the de-quantised matmuls; "auto" = bf16 on CUDA, fp32 on CPU.
    compute_dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"


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
