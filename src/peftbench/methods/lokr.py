"""LoKr: the weight update as a Kronecker product of a small full matrix and a low-rank one
(LyCORIS, Yeh et al. 2024; Edalati et al. 2022, KronA)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from peftbench.methods import Method, MethodContext
from peftbench.methods._common import LycorisParams, lycoris_options
from peftbench.structured import setting

if TYPE_CHECKING:  # torch loads when a method is applied
    from torch import nn


@dataclass
class LoKrParams(LycorisParams):
    """LyCORIS defaults (see _common.LycorisParams). With factor -1 (the most square split,
    PEFT's default) a 768x768 weight becomes kron(24x24 full, 32x32 of rank 8): 1,088 weights,
    1/12 of LoRA's."""

    decompose_factor: int = setting(-1)


def apply(model: nn.Module, params: LoKrParams, context: MethodContext) -> nn.Module:
    # PEFT's LyCORIS layers wrap plain nn.Linear only, so LoKr has no 4-bit base option.
    from peft import LoKrConfig, TaskType, get_peft_model

    config = LoKrConfig(
        task_type=TaskType.SEQ_CLS,
        decompose_factor=params.decompose_factor,
        **lycoris_options(model, params),
    )
    return get_peft_model(model, config)


METHOD = Method(
    name="lokr",
    description="LoKr: Kronecker product of a small full matrix and a low-rank one (LyCORIS).",
    params_class=LoKrParams,
    apply=apply,
)
