"""LoKr: the weight update as a Kronecker product of a small full matrix and a low-rank one
(LyCORIS, Yeh et al. 2024; Edalati et al. 2022, KronA)."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft import LoKrConfig, TaskType, get_peft_model
from torch import nn

from peftbench.methods import Method, MethodContext
from peftbench.methods._common import head_modules


@dataclass
class LoKrParams:
    # No published rate for sequence classification; LoRA's (5e-4, Hu et al. 2021, table 9), as
    # LoKr is compared at LoRA's rank and targets.
    learning_rate: float = 5e-4
    # PEFT's LoKrConfig defaults (r=8, alpha=8, factor -1: the most square split). A 768x768
    # weight becomes kron(24x24 full, 32x32 of rank 8): 1,088 weights, 1/12 of LoRA's.
    r: int = 8
    alpha: int = 8
    rank_dropout: float = 0.0
    module_dropout: float = 0.0
    decompose_factor: int = -1
    target_modules: list[str] = field(default_factory=lambda: ["query", "value"])
    # Modules trained in full next to the adapter; null = the classification head (and the
    # pooler of BERT-family models), see methods/_common.py.
    modules_to_save: list[str] | None = None

    def validate(self) -> None:
        if self.r <= 0 or self.alpha <= 0:
            raise ValueError(f"r and alpha must be positive, got r={self.r}, alpha={self.alpha}")
        if not self.target_modules:
            raise ValueError("target_modules: name at least one module, e.g. [query, value]")


def apply(model: nn.Module, params: LoKrParams, context: MethodContext) -> nn.Module:
    # PEFT's LyCORIS layers wrap plain nn.Linear only, so LoKr has no 4-bit base option.
    config = LoKrConfig(
        task_type=TaskType.SEQ_CLS,
        r=params.r,
        alpha=params.alpha,
        rank_dropout=params.rank_dropout,
        module_dropout=params.module_dropout,
        decompose_factor=params.decompose_factor,
        target_modules=list(params.target_modules),
        modules_to_save=head_modules(model, params.modules_to_save),
    )
    return get_peft_model(model, config)


METHOD = Method(
    name="lokr",
    description="LoKr: Kronecker product of a small full matrix and a low-rank one (LyCORIS).",
    params_class=LoKrParams,
    apply=apply,
)
