"""LoRA: trainable low-rank updates B·A added to frozen weight matrices (Hu et al. 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from peftbench.methods import Method, MethodContext
from peftbench.methods._common import check_target_modules, lora_variant
from peftbench.methods.targets import TARGETS_HELP
from peftbench.structured import setting

if TYPE_CHECKING:  # torch loads when a method is applied
    from torch import nn


@dataclass
class LoraParams:
    learning_rate: float = setting(
        5e-4,
        help=(
            "Adapters learn best at ~10-100x the full fine-tuning rate; 5e-4 follows the LoRA "
            "paper's RoBERTa-base GLUE settings (Hu et al. 2021, table 9: 4e-4..5e-4). The study "
            "states none."
        ),
    )
    r: int = setting(8)
    alpha: int = setting(16)
    dropout: float = setting(0.1)
    target_modules: list[str] | str | None = setting(
        None,
        help=(
            "r=8 on query and value is the LoRA paper's setting and the study's. " + TARGETS_HELP
        ),
    )
    modules_to_save: list[str] | None = setting(
        None,
        help=(
            "Modules trained in full next to the adapter; null = the classification head (and the "
            "pooler of BERT-family models), see methods/_common.py."
        ),
    )

    def validate(self) -> None:
        if self.r <= 0 or self.alpha <= 0:
            raise ValueError(f"r and alpha must be positive, got r={self.r}, alpha={self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        check_target_modules(self.target_modules)


def apply(model: nn.Module, params: LoraParams, context: MethodContext) -> nn.Module:
    return lora_variant(model, params)


METHOD = Method(
    name="lora",
    description="LoRA: low-rank adapters on the attention projections; head trained in full.",
    params_class=LoraParams,
    apply=apply,
)
