"""BitFit: train only the bias terms (and the classification head) (Ben Zaken et al. 2022,
"BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based Masked Language-models")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from peftbench.methods import Method, MethodContext
from peftbench.methods._common import freeze_all, train_head
from peftbench.structured import setting

if TYPE_CHECKING:  # torch loads when a method is applied
    from torch import nn


@dataclass
class BitFitParams:
    learning_rate: float = setting(
        5e-4,
        help=(
            "The BitFit paper sweeps 1e-4..1e-3 on BERT GLUE (Ben Zaken et al. 2022); 5e-4 is "
            "inside that range and equal to LoRA's rate."
        ),
    )
    modules_to_save: list[str] | None = setting(
        None,
        help=(
            "Modules trained in full next to the biases; null = the classification head (and the "
            "pooler of BERT-family models), see methods/_common.py."
        ),
    )


def apply(model: nn.Module, params: BitFitParams, context: MethodContext) -> nn.Module:
    # Every bias: attention and feed-forward projections and LayerNorms. No PEFT wrapper, so the
    # run saves the whole model.
    freeze_all(model)
    for name, parameter in model.named_parameters():
        if name.rsplit(".", 1)[-1] == "bias":
            parameter.requires_grad_(True)
    train_head(model, params.modules_to_save)
    return model


METHOD = Method(
    name="bitfit",
    description="BitFit: only the bias terms are trained, plus the classification head.",
    params_class=BitFitParams,
    apply=apply,
)
