"""LoHa: the weight update as the Hadamard product of two low-rank products, (A1 B1) * (A2 B2)
(Hyeon-Woo et al. 2022, FedPara; LyCORIS, Yeh et al. 2024)."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft import LoHaConfig, TaskType, get_peft_model
from torch import nn

from peftbench.methods import Method, MethodContext
from peftbench.methods._common import head_modules


@dataclass
class LoHaParams:
    # No published rate for sequence classification; LoRA's (5e-4, Hu et al. 2021, table 9), as
    # LoHa is compared at LoRA's rank and targets.
    learning_rate: float = 5e-4
    # PEFT's LoHaConfig defaults (r=8, alpha=8), on LoRA's targets. Two rank-8 pairs per
    # matrix: twice LoRA's adapter weights, for an update of rank up to 64.
    r: int = 8
    alpha: int = 8
    rank_dropout: float = 0.0
    module_dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["query", "value"])
    # Modules trained in full next to the adapter; null = the classification head (and the
    # pooler of BERT-family models), see methods/_common.py.
    modules_to_save: list[str] | None = None

    def validate(self) -> None:
        if self.r <= 0 or self.alpha <= 0:
            raise ValueError(f"r and alpha must be positive, got r={self.r}, alpha={self.alpha}")
        if not self.target_modules:
            raise ValueError("target_modules: name at least one module, e.g. [query, value]")


def apply(model: nn.Module, params: LoHaParams, context: MethodContext) -> nn.Module:
    # PEFT's LyCORIS layers wrap plain nn.Linear only, so LoHa has no 4-bit base option.
    config = LoHaConfig(
        task_type=TaskType.SEQ_CLS,
        r=params.r,
        alpha=params.alpha,
        rank_dropout=params.rank_dropout,
        module_dropout=params.module_dropout,
        target_modules=list(params.target_modules),
        modules_to_save=head_modules(model, params.modules_to_save),
    )
    return get_peft_model(model, config)


METHOD = Method(
    name="loha",
    description="LoHa: Hadamard product of two low-rank updates (LyCORIS).",
    params_class=LoHaParams,
    apply=apply,
)
