"""IA3: learned vectors that rescale keys, values and feed-forward activations (Liu et al. 2022)."""

from __future__ import annotations

from dataclasses import dataclass

from peft import IA3Config, TaskType, get_peft_model
from torch import nn

from peftbench.methods import Method, MethodContext
from peftbench.methods._common import head_modules


@dataclass
class IA3Params:
    # IA3 trains ~100x fewer adapter weights than LoRA and wants a larger rate; 3e-3 is the
    # T-Few paper's rate (Liu et al. 2022, section 3.3). The study states none.
    learning_rate: float = 3e-3
    # null = PEFT's defaults for the architecture (for BERT/RoBERTa: key, value, output.dense).
    target_modules: list[str] | None = None
    feedforward_modules: list[str] | None = None
    # Modules trained in full next to the adapter; null = the classification head (and the
    # pooler of BERT-family models), see methods/_common.py.
    modules_to_save: list[str] | None = None

    def validate(self) -> None:
        if (self.target_modules is None) != (self.feedforward_modules is None):
            raise ValueError(
                "give target_modules and feedforward_modules together, or neither "
                "(feedforward_modules must be a subset of target_modules)"
            )


def apply(model: nn.Module, params: IA3Params, context: MethodContext) -> nn.Module:
    config = IA3Config(
        task_type=TaskType.SEQ_CLS,
        target_modules=params.target_modules,
        feedforward_modules=params.feedforward_modules,
        modules_to_save=head_modules(model, params.modules_to_save),
    )
    return get_peft_model(model, config)


METHOD = Method(
    name="ia3",
    description="IA3: learned rescaling vectors on keys, values and feed-forward outputs.",
    params_class=IA3Params,
    apply=apply,
)
