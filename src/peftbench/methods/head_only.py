"""Linear probe: the encoder stays frozen and only the classification head is trained; the floor
that every fine-tuning method must beat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from peftbench.methods import Method, MethodContext
from peftbench.methods._common import freeze_all, train_head
from peftbench.structured import setting

if TYPE_CHECKING:  # torch loads when a method is applied
    from torch import nn


@dataclass
class HeadOnlyParams:
    learning_rate: float = setting(
        1e-3,
        help=(
            "Only the head learns, so it may move fast: 1e-3 is the rate of PEFT's prompt-tuning "
            "sequence-classification example "
            "(examples/sequence_classification/Prompt_Tuning.ipynb), whose trainable weights are "
            "almost all head as well."
        ),
    )
    modules_to_save: list[str] | None = setting(
        None,
        help=(
            "The head; null = the classifier (and the pooler of BERT-family models), see "
            "methods/_common.py."
        ),
    )


def apply(model: nn.Module, params: HeadOnlyParams, context: MethodContext) -> nn.Module:
    # No PEFT wrapper, so the run saves the whole model.
    freeze_all(model)
    train_head(model, params.modules_to_save)
    return model


METHOD = Method(
    name="head_only",
    description="Linear probe: frozen encoder, classification head trained (the floor).",
    params_class=HeadOnlyParams,
    apply=apply,
)
