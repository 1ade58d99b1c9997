"""P-tuning: virtual-token embeddings produced by a small trained MLP from trained inputs,
prepended to the input (Liu et al. 2021, "GPT Understands, Too")."""

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
class PTuningSettings:
    learning_rate: float = setting(
        1e-3,
        help=(
            "PEFT's sequence-classification example (examples/sequence_classification/ "
            "P_Tuning.ipynb, roberta-large on MRPC): 20 virtual tokens, an MLP of width 128, lr "
            "1e-3."
        ),
    )
    num_virtual_tokens: int = setting(20)
    encoder_hidden_size: int = setting(128)
    encoder: Literal["MLP", "LSTM"] = setting(
        "MLP",
        help="the reparametrisation (the paper's is an LSTM)",
    )
    encoder_dropout: float = setting(0.0)
    modules_to_save: list[str] | None = setting(
        None,
        help=(
            "Modules trained in full next to the prompt; null = the classification head (and the "
            "pooler of BERT-family models), see methods/_common.py."
        ),
    )

    def validate(self) -> None:
        if self.num_virtual_tokens <= 0 or self.encoder_hidden_size <= 0:
            raise ValueError("num_virtual_tokens and encoder_hidden_size must be positive")
        if not 0.0 <= self.encoder_dropout < 1.0:
            raise ValueError(f"encoder_dropout must be in [0, 1), got {self.encoder_dropout}")


@dataclass
class PTuningParams(QuantizedBaseParams, PTuningSettings):
    """P-tuning's settings, then those of a 4-bit base."""


def apply(model: nn.Module, params: PTuningParams, context: MethodContext) -> nn.Module:
    from peft import PromptEncoderConfig, TaskType, get_peft_model

    guard_prompt_length(model, params.num_virtual_tokens, "ptuning")
    config = PromptEncoderConfig(
        task_type=TaskType.SEQ_CLS,
        num_virtual_tokens=params.num_virtual_tokens,
        encoder_hidden_size=params.encoder_hidden_size,
        encoder_reparameterization_type=params.encoder,
        encoder_dropout=params.encoder_dropout,
        modules_to_save=head_modules(model, params.modules_to_save),
    )
    return get_peft_model(model, config)


METHOD = Method(
    name="ptuning",
    description="P-tuning: virtual tokens from a trained MLP prompt encoder, prepended to the "
    "input (the MLP is training-only; the saved adapter holds the resulting embeddings).",
    params_class=PTuningParams,
    apply=apply,
    not_mergeable=PROMPT_NOT_MERGEABLE,
)
