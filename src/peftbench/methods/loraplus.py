"""LoRA+: LoRA whose B matrices learn at a larger rate than its A matrices
(Hayou et al. 2024, "LoRA+: Efficient Low Rank Adaptation of Large Models")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from peftbench.methods import Method, MethodContext
from peftbench.methods._common import QuantizedBaseParams, lora_variant
from peftbench.methods.lora import LoraParams
from peftbench.structured import setting

if TYPE_CHECKING:  # torch loads when a method is applied
    from torch import nn


@dataclass
class LoraPlusParams(QuantizedBaseParams, LoraParams):
    learning_rate: float = setting(
        1e-4,
        help=(
            "The rate of the A matrices and the head. 1e-4 is the authors' roberta-base GLUE "
            "script (github.com/nikhil-ghosh-berkeley/loraplus, glue/scripts/run_roberta_lora.sh);"
            " B learns at lr_ratio times it, so the B matrices get 1.6e-3."
        ),
    )
    lr_ratio: float = setting(
        16.0,
        help="eta_B / eta_A; the paper's general recommendation is 2^4 (Hayou et al. 2024).",
    )

    def validate(self) -> None:
        super().validate()
        if self.lr_ratio <= 0:
            raise ValueError(f"lr_ratio must be positive, got {self.lr_ratio}")


def apply(model: nn.Module, params: LoraPlusParams, context: MethodContext) -> nn.Module:
    return lora_variant(model, params)


def param_groups(model: nn.Module, params: LoraPlusParams) -> list[dict]:
    """The B matrices at learning_rate * lr_ratio; A matrices and the head at learning_rate."""
    b_matrices, others = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (b_matrices if ".lora_B." in name else others).append(parameter)
    return [
        {"params": others, "lr": params.learning_rate},
        {"params": b_matrices, "lr": params.learning_rate * params.lr_ratio},
    ]


METHOD = Method(
    name="loraplus",
    description="LoRA+: LoRA with the B matrices trained at lr_ratio times the rate of A.",
    params_class=LoraPlusParams,
    apply=apply,
    param_groups=param_groups,
)
