"""IA3: learned vectors that rescale keys, values and feed-forward activations (Liu et al. 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from peftbench.methods import Method, MethodContext
from peftbench.methods._common import check_target_modules, head_modules
from peftbench.methods.targets import resolve_ia3_targets
from peftbench.structured import setting

if TYPE_CHECKING:  # torch loads when a method is applied
    from torch import nn


@dataclass
class IA3Params:
    learning_rate: float = setting(
        3e-3,
        help=(
            "IA3 trains ~100x fewer adapter weights than LoRA and wants a larger rate; 3e-3 is the"
            " T-Few paper's rate (Liu et al. 2022, section 3.3). The study states none."
        ),
    )
    target_modules: list[str] | str | None = setting(
        None,
        help=(
            "null = the architecture's key, value and feed-forward output (methods/targets.py; for"
            " BERT/RoBERTa: key, value, output.dense); a list of module names; or all-linear "
            "(every linear layer outside the head, the feed-forward outputs among them scaling "
            "their input)."
        ),
    )
    feedforward_modules: list[str] | None = setting(None)
    modules_to_save: list[str] | None = setting(
        None,
        help=(
            "Modules trained in full next to the adapter; null = the classification head (and the "
            "pooler of BERT-family models), see methods/_common.py."
        ),
    )

    def validate(self) -> None:
        check_target_modules(self.target_modules)
        explicit = self.target_modules not in (None, "all-linear")
        if explicit and self.feedforward_modules is None:
            raise ValueError(
                "give feedforward_modules with a list of target_modules (the feed-forward ones "
                "among them, possibly []), or leave target_modules null / all-linear"
            )


def apply(model: nn.Module, params: IA3Params, context: MethodContext) -> nn.Module:
    from peft import IA3Config, TaskType, get_peft_model

    targets, feedforward = resolve_ia3_targets(
        model, params.target_modules, params.feedforward_modules
    )
    config = IA3Config(
        task_type=TaskType.SEQ_CLS,
        target_modules=targets,
        feedforward_modules=feedforward,
        modules_to_save=head_modules(model, params.modules_to_save),
    )
    return get_peft_model(model, config)


METHOD = Method(
    name="ia3",
    description="IA3: learned rescaling vectors on keys, values and feed-forward outputs.",
    params_class=IA3Params,
    apply=apply,
)
