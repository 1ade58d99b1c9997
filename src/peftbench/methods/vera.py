"""VeRA: one pair of frozen random low-rank matrices shared by all layers, adapted per layer by
two trained scaling vectors (Kopiczko et al. 2024, "VeRA: Vector-based Random Matrix
Adaptation")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

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
class VeraSettings:
    learning_rate: float = setting(
        4e-3,
        help=(
            "VeRA trains ~12x fewer adapter weights than LoRA and is run at higher rates: 4e-3 is "
            "the paper's roberta-base SST-2 rate (Kopiczko et al. 2024, appendix, GLUE "
            "hyperparameters; 4e-3..1e-2 across tasks)."
        ),
    )
    r: int = setting(
        256,
        help=(
            "Rank of the shared random matrices: PEFT's VeraConfig default (the paper used 1024 "
            "for roberta-base); each adapted layer trains r + out_features scaling values."
        ),
    )
    target_modules: list[str] | str | None = setting(
        None,
        help=(
            "Query and value, as LoRA, so that the two differ only in how the update is "
            "parametrised. " + TARGETS_HELP
        ),
    )
    dropout: float = setting(0.0, help="PEFT's default")
    d_initial: float = setting(
        0.1,
        help="initial value of the d vector: PEFT's default, from the paper",
    )
    projection_seed: int = setting(
        0,
        help="seed of the shared random matrices (saved with the adapter)",
    )
    modules_to_save: list[str] | None = setting(
        None,
        help=(
            "Modules trained in full next to the adapter; null = the classification head (and the "
            "pooler of BERT-family models), see methods/_common.py."
        ),
    )

    def validate(self) -> None:
        if self.r <= 0:
            raise ValueError(f"r must be positive, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        check_target_modules(self.target_modules)


@dataclass
class VeraParams(QuantizedBaseParams, VeraSettings):
    """VeRA's settings, then those of a 4-bit base."""


def apply(model: nn.Module, params: VeraParams, context: MethodContext) -> nn.Module:
    from peft import TaskType, VeraConfig, get_peft_model

    config = VeraConfig(
        task_type=TaskType.SEQ_CLS,
        r=params.r,
        target_modules=resolve_targets(model, params.target_modules),
        vera_dropout=params.dropout,
        d_initial=params.d_initial,
        projection_prng_key=params.projection_seed,
        save_projection=True,
        modules_to_save=head_modules(model, params.modules_to_save),
    )
    return get_peft_model(model, config)


METHOD = Method(
    name="vera",
    description="VeRA: shared frozen random low-rank matrices, trained per-layer scaling vectors.",
    params_class=VeraParams,
    apply=apply,
)
