"""Prompt tuning: trained embeddings of virtual tokens prepended to the input (Lester et al.
2021, "The Power of Scale for Parameter-Efficient Prompt Tuning")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from peftbench.methods import Method, MethodContext
from peftbench.methods._common import (
    PROMPT_NOT_MERGEABLE,
    QuantizedBaseParams,
    guard_prompt_length,
    head_modules,
)
from peftbench.structured import setting

if TYPE_CHECKING:  # torch loads when a method is applied
    from torch import nn


@dataclass
class PromptTuningSettings:
    learning_rate: float = setting(
        1e-3,
        help=(
            "PEFT's sequence-classification example (examples/sequence_classification/ "
            "Prompt_Tuning.ipynb, roberta-large on MRPC: lr 1e-3)."
        ),
    )
    num_virtual_tokens: int = setting(
        20,
        help=(
            "20 virtual tokens: Lester et al. 2021 find gains flatten beyond ~20 (fig. 3a). They "
            "take positions, so the text may be at most max positions - 20 tokens long."
        ),
    )
    init: Literal["sample_vocab", "random"] = setting(
        "sample_vocab",
        help=(
            '"sample_vocab" starts each virtual token at the embedding of a random vocabulary '
            'token, which beats random vectors in Lester et al. (fig. 3b); "random" is PEFT\'s '
            "default."
        ),
    )
    modules_to_save: list[str] | None = setting(
        None,
        help=(
            "Modules trained in full next to the prompt; null = the classification head (and the "
            "pooler of BERT-family models), see methods/_common.py."
        ),
    )

    def validate(self) -> None:
        if self.num_virtual_tokens <= 0:
            raise ValueError(f"num_virtual_tokens must be positive, got {self.num_virtual_tokens}")


@dataclass
class PromptTuningParams(QuantizedBaseParams, PromptTuningSettings):
    """Prompt tuning's settings, then those of a 4-bit base."""


def apply(model: nn.Module, params: PromptTuningParams, context: MethodContext) -> nn.Module:
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    guard_prompt_length(model, params.num_virtual_tokens, "prompt_tuning")
    init = (
        PromptTuningInit.SAMPLE_VOCAB if params.init == "sample_vocab" else PromptTuningInit.RANDOM
    )
    config = PromptTuningConfig(
        task_type=TaskType.SEQ_CLS,
        num_virtual_tokens=params.num_virtual_tokens,
        prompt_tuning_init=init,
        modules_to_save=head_modules(model, params.modules_to_save),
    )
    return get_peft_model(model, config)


METHOD = Method(
    name="prompt_tuning",
    description="Prompt tuning: trained virtual-token embeddings prepended to the input.",
    params_class=PromptTuningParams,
    apply=apply,
    not_mergeable=PROMPT_NOT_MERGEABLE,
)
