"""Pieces shared by the PEFT-based methods."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from peftbench.errors import PeftbenchError
from peftbench.methods.targets import TARGETS_HELP, head_modules, resolve_targets
from peftbench.structured import setting

if TYPE_CHECKING:
    from torch import nn

__all__ = ["head_modules", "resolve_targets"]  # re-exported: the methods import them from here


# Why prompt tuning, P-tuning and prefix tuning adapters are never merged into the base.
PROMPT_NOT_MERGEABLE = (
    "prompt method: its virtual tokens are inputs, there is no weight delta to merge"
)


def check_target_modules(target_modules: list[str] | str | None) -> None:
    """The shape every method's target_modules setting must have (ValueError otherwise)."""
    if target_modules == []:
        raise ValueError("target_modules: name at least one module, e.g. [query, value]")
    if isinstance(target_modules, str) and target_modules != "all-linear":
        raise ValueError(
            f"target_modules: {target_modules!r}: give a list of module names, null (the "
            "architecture's default) or all-linear"
        )


def freeze_all(model: nn.Module) -> None:
    for parameter in model.parameters():
        parameter.requires_grad_(False)


def modules_named(model: nn.Module, names: list[str]) -> list[nn.Module]:
    """The modules whose qualified name is one of `names` or ends with ".<name>" (PEFT's rule)."""
    found = [
        module
        for qualified, module in model.named_modules()
        if any(qualified == name or qualified.endswith(f".{name}") for name in names)
    ]
    if not found:
        raise ValueError(f"no module named {', '.join(names)} in {type(model).__name__}")
    return found


def train_head(model: nn.Module, requested: list[str] | None) -> None:
    """Make the classification head (see head_modules) trainable in full."""
    for module in modules_named(model, head_modules(model, requested)):
        for parameter in module.parameters():
            parameter.requires_grad_(True)


@dataclass
class FourBitSettings:
    """How 4-bit base weights are stored and computed with; turned into the load-time spec by
    Method.quantization. QLoRA's params have them; so do QuantizedBaseParams'."""

    quant_type: Literal["nf4", "fp4"] = setting(
        "nf4",
        help=(
            "The QLoRA paper's storage type and double quantisation of the scales (Dettmers et al."
            " 2023)."
        ),
    )
    double_quant: bool = setting(True)
    compute_dtype: Literal["auto", "fp32", "bf16", "fp16"] = setting(
        "auto",
        help='Dtype of the de-quantised matmuls; "auto" = bf16 on CUDA, fp32 on CPU.',
    )


@dataclass
class _BaseChoice:
    base: Literal["full", "4bit"] = setting(
        "full",
        help=(
            '"4bit" loads the frozen base weights in 4-bit (as QLoRA does) and trains the method '
            "on top."
        ),
    )


@dataclass
class QuantizedBaseParams(FourBitSettings, _BaseChoice):
    """Settings for running a method on a 4-bit base (the choice, then how it is stored).

    Mixed into the params of each method that PEFT can put on bitsandbytes 4-bit layers, after
    the method's own fields: `class DoraParams(QuantizedBaseParams, LoraParams)`.
    """


def position_limit(model: nn.Module) -> int | None:
    """How many tokens the model's position embeddings hold (None if it has none)."""
    config = getattr(model, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        return None
    # RoBERTa-style embeddings number positions from padding_idx + 1 (2 for roberta-base: 514
    # position embeddings hold 512 tokens).
    embeddings = getattr(getattr(model, "base_model", None), "embeddings", None)
    if hasattr(embeddings, "create_position_ids_from_input_ids"):
        positions -= embeddings.padding_idx + 1
    return positions


def lora_variant(model: nn.Module, params: Any, **variant: Any) -> nn.Module:
    """LoRA as methods/lora.py builds it from LoraParams, plus a variant's flags (use_dora=...)."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=params.r,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=resolve_targets(model, params.target_modules),
        modules_to_save=head_modules(model, params.modules_to_save),
        **variant,
    )
    return get_peft_model(model, config)


def guard_prompt_length(model: nn.Module, virtual_tokens: int, method: str) -> None:
    """Fail clearly when virtual tokens + text overflow the model's position embeddings.

    Prompt tuning and P-tuning prepend their virtual tokens to the input, so they occupy
    positions: with 20 of them roberta-base holds 492 text tokens, not 512. Without this check
    the overflow surfaces as an index error deep inside the embeddings.
    """
    limit = position_limit(model)
    if limit is None:
        return

    def check(module: nn.Module, args: tuple, kwargs: dict) -> None:
        embeds = kwargs.get("inputs_embeds")
        if embeds is not None and embeds.shape[1] > limit:
            raise PeftbenchError(
                f"{method}: {virtual_tokens} virtual tokens + {embeds.shape[1] - virtual_tokens} "
                f"text tokens exceed the model's {limit} positions; set training.max_length to "
                f"at most {limit - virtual_tokens} (or use fewer num_virtual_tokens)"
            )

    model.register_forward_pre_hook(check, with_kwargs=True)


@dataclass
class LycorisParams:
    """What the LyCORIS methods (LoHa, LoKr) share; compared at LoRA's rank and targets."""

    learning_rate: float = setting(
        5e-4,
        help=(
            "No published rate for sequence classification; LoRA's (5e-4, Hu et al. 2021, table 9)."
        ),
    )
    r: int = setting(
        8,
        help="PEFT's LoHaConfig / LoKrConfig defaults (r=8, alpha=8), on LoRA's targets.",
    )
    alpha: int = setting(8)
    rank_dropout: float = setting(0.0)
    module_dropout: float = setting(0.0)
    target_modules: list[str] | str | None = setting(
        None,
        help=TARGETS_HELP,
    )
    modules_to_save: list[str] | None = setting(
        None,
        help=(
            "Modules trained in full next to the adapter; null = the architecture's classification"
            " head (classifier / score, and the pooler of BERT-family models), see "
            "methods/targets.py."
        ),
    )

    def validate(self) -> None:
        if self.r <= 0 or self.alpha <= 0:
            raise ValueError(f"r and alpha must be positive, got r={self.r}, alpha={self.alpha}")
        check_target_modules(self.target_modules)


def lycoris_options(model: nn.Module, params: LycorisParams) -> dict[str, Any]:
    """The keyword arguments that PEFT's LoHaConfig and LoKrConfig share, from `params`."""
    return {
        "r": params.r,
        "alpha": params.alpha,
        "rank_dropout": params.rank_dropout,
        "module_dropout": params.module_dropout,
        "target_modules": resolve_targets(model, params.target_modules),
        "modules_to_save": head_modules(model, params.modules_to_save),
    }
