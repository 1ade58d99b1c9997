"""Full fine-tuning: every weight of the model is trained."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from peftbench.methods import Method, MethodContext
from peftbench.structured import setting

if TYPE_CHECKING:  # torch loads when a method is applied
    from torch import nn


@dataclass
class FullParams:
    learning_rate: float = setting(
        2e-5,
        help=(
            "2e-5 is the usual rate for BERT/RoBERTa-base fine-tuning (Liu et al. 2019, RoBERTa, "
            "table 10: 1e-5..3e-5 on GLUE). The reference study states none."
        ),
    )


def apply(model: nn.Module, params: FullParams, context: MethodContext) -> nn.Module:
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


METHOD = Method(
    name="full",
    description="Full fine-tuning: all weights trained.",
    params_class=FullParams,
    apply=apply,
    saves_whole_model=True,
)
