"""AdaLoRA: SVD-shaped LoRA whose rank budget is moved, during training, to the weight matrices
that matter most (Zhang et al. 2023, "Adaptive Budget Allocation for Parameter-Efficient
Fine-Tuning")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from peftbench.methods import Method, MethodContext
from peftbench.methods._common import (
    QuantizedBaseParams,
    check_target_modules,
    head_modules,
    resolve_targets,
)
from peftbench.methods.targets import TARGETS_HELP
from peftbench.structured import setting

if TYPE_CHECKING:  # torch loads when a method is applied
    from torch import nn


@dataclass
class AdaLoraSettings:
    learning_rate: float = setting(
        8e-4,
        help=(
            "The AdaLoRA authors' SST-2 rate (github.com/QingruZhang/AdaLoRA, "
            "NLU/scripts/run_debertav3_sst2.sh: 8e-4; 5e-4..1.2e-3 across GLUE)."
        ),
    )
    init_r: int = setting(
        12,
        help=(
            "Start at rank 12 and prune to an average of 8, LoRA's rank: PEFT's AdaLoRA example "
            "(init_r=12, target_r=8, lora_alpha=32, lora_dropout=0.1, beta1=beta2=0.85, "
            "deltaT=10)."
        ),
    )
    target_r: int = setting(8)
    alpha: int = setting(32)
    dropout: float = setting(0.1)
    target_modules: list[str] | str | None = setting(
        None,
        help=TARGETS_HELP,
    )
    tinit_fraction: float = setting(
        0.15,
        help=(
            "The schedule as fractions of the run's optimiser steps: no pruning during the first "
            "tinit_fraction, fixed ranks during the last tfinal_fraction. The authors' GLUE "
            "scripts use 12-17% and 44-52% (SST-2: 6,000 and 22,000 of ~50,500 steps; MRPC: 600 "
            "and 1,800 of ~3,450)."
        ),
    )
    tfinal_fraction: float = setting(0.45)
    delta_t: int = setting(10, help="steps between rank reallocations")
    beta1: float = setting(0.85)
    beta2: float = setting(0.85)
    orth_reg_weight: float = setting(
        0.1,
        help=(
            "Weight of the orthogonality penalty on P and Q, which the reported training loss "
            "includes: 0.1 in the authors' scripts (PEFT's default is 0.5)."
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
        if not 0 < self.target_r <= self.init_r:
            raise ValueError(f"need 0 < target_r <= init_r, got {self.target_r}, {self.init_r}")
        if self.tinit_fraction < 0 or self.tfinal_fraction < 0:
            raise ValueError("tinit_fraction and tfinal_fraction must be >= 0")
        if self.tinit_fraction + self.tfinal_fraction >= 1:
            raise ValueError(
                "tinit_fraction + tfinal_fraction must be < 1, leaving steps to reallocate ranks"
            )
        if self.delta_t <= 0 or self.alpha <= 0 or self.orth_reg_weight < 0:
            raise ValueError("delta_t and alpha must be positive, orth_reg_weight >= 0")
        check_target_modules(self.target_modules)


@dataclass
class AdaLoraParams(QuantizedBaseParams, AdaLoraSettings):
    """AdaLoRA's settings, then those of a 4-bit base."""


def apply(model: nn.Module, params: AdaLoraParams, context: MethodContext) -> nn.Module:
    from peft import AdaLoraConfig, TaskType, get_peft_model

    total = max(context.total_steps, 1)
    # validate() keeps the fractions' sum below 1, so some steps are left to reallocate.
    tinit = int(params.tinit_fraction * total)
    tfinal = int(params.tfinal_fraction * total)
    config = AdaLoraConfig(
        task_type=TaskType.SEQ_CLS,
        init_r=params.init_r,
        target_r=params.target_r,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=resolve_targets(model, params.target_modules),
        tinit=tinit,
        tfinal=tfinal,
        deltaT=params.delta_t,
        beta1=params.beta1,
        beta2=params.beta2,
        orth_reg_weight=params.orth_reg_weight,
        total_step=total,
        modules_to_save=head_modules(model, params.modules_to_save),
    )
    return get_peft_model(model, config)


def after_step(model: nn.Module, step: int) -> None:
    """Update the importance scores and, on schedule, move rank between matrices."""
    model.base_model.update_and_allocate(step)


def save_state(model: nn.Module) -> dict[str, Any]:
    """What PEFT keeps in memory only, for an epoch checkpoint: the rank allocator's smoothed
    importance and uncertainty of every adapter weight (the next reallocation ranks by them)
    and the rank pattern (which singular values are pruned, needed after the final allocation)."""
    adalora = model.base_model
    allocator = adalora.rankallocator
    return {
        "ipt": allocator.ipt,
        "exp_avg_ipt": allocator.exp_avg_ipt,
        "exp_avg_unc": allocator.exp_avg_unc,
        "rank_pattern": adalora.peft_config[adalora.trainable_adapter_name].rank_pattern,
    }


def restore_state(model: nn.Module, saved: dict[str, Any]) -> None:
    adalora = model.base_model
    allocator = adalora.rankallocator
    device = next(model.parameters()).device
    for name in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
        setattr(allocator, name, {key: t.to(device) for key, t in saved[name].items()})
    adalora.peft_config[adalora.trainable_adapter_name].rank_pattern = saved["rank_pattern"]


METHOD = Method(
    name="adalora",
    description="AdaLoRA: SVD-form LoRA, rank budget reallocated by importance during training "
    "(its training loss includes the orthogonality penalty).",
    params_class=AdaLoraParams,
    apply=apply,
    after_step=after_step,
    save_state=save_state,
    restore_state=restore_state,
)
