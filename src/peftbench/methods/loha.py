"""LoHa: the weight update as the Hadamard product of two low-rank products, (A1 B1) * (A2 B2)
(Hyeon-Woo et al. 2022, FedPara; LyCORIS, Yeh et al. 2024)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from peftbench.methods import Method, MethodContext
from peftbench.methods._common import LycorisParams, lycoris_options

if TYPE_CHECKING:  # torch loads when a method is applied
    from torch import nn


@dataclass
class LoHaParams(LycorisParams):
    """LyCORIS defaults (see _common.LycorisParams). Two rank-8 pairs per matrix: twice LoRA's
    adapter weights, for an update of rank up to 64."""


def apply(model: nn.Module, params: LoHaParams, context: MethodContext) -> nn.Module:
    # PEFT's LyCORIS layers wrap plain nn.Linear only, so LoHa has no 4-bit base option.
    from peft import LoHaConfig, TaskType, get_peft_model

    config = LoHaConfig(task_type=TaskType.SEQ_CLS, **lycoris_options(model, params))
    return get_peft_model(model, config)


METHOD = Method(
    name="loha",
    description="LoHa: Hadamard product of two low-rank updates (LyCORIS).",
    params_class=LoHaParams,
    apply=apply,
)
