"""Prefix tuning: trained keys and values prepended to every attention layer (Li & Liang 2021,
"Prefix-Tuning: Optimizing Continuous Prompts for Generation"; for classification, Liu et al.
2022, "P-Tuning v2").

PEFT hands the prefix to the model as `past_key_values`, and refuses models whose forward does
not list that argument. transformers 5 sequence-classification models no longer do (the
encoder's argument is now `cache`), so `accept_past_key_values` gives the model a forward that
takes it and passes it on. `apply` then checks that the prefix really changes the logits, and
fails if the encoder ignores it, rather than silently training only the head.
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from peftbench.errors import PeftbenchError
from peftbench.methods import Method, MethodContext
from peftbench.methods._common import PROMPT_NOT_MERGEABLE, QuantizedBaseParams, head_modules
from peftbench.structured import setting

if TYPE_CHECKING:  # torch loads when a method is applied
    import torch
    from torch import nn


@dataclass
class PrefixTuningSettings:
    learning_rate: float = setting(
        1e-2,
        help=(
            "PEFT's sequence-classification example (examples/sequence_classification/ "
            "prefix_tuning.ipynb, roberta-large on MRPC): 20 virtual tokens, no projection, lr "
            "1e-2."
        ),
    )
    num_virtual_tokens: int = setting(20)
    prefix_projection: bool = setting(
        False,
        help=(
            "Reparametrise the prefix through an MLP while training (Li & Liang 2021, sec. 4.3); "
            "off in PEFT's example and by default."
        ),
    )
    encoder_hidden_size: int = setting(
        512,
        help=(
            "Width of that MLP, when used: P-tuning v2's default prefix_hidden_size (PEFT has "
            "none)."
        ),
    )
    modules_to_save: list[str] | None = setting(
        None,
        help=(
            "Modules trained in full next to the prefix; null = the classification head (and the "
            "pooler of BERT-family models), see methods/_common.py."
        ),
    )

    def validate(self) -> None:
        if self.num_virtual_tokens <= 0 or self.encoder_hidden_size <= 0:
            raise ValueError("num_virtual_tokens and encoder_hidden_size must be positive")


@dataclass
class PrefixTuningParams(QuantizedBaseParams, PrefixTuningSettings):
    """Prefix tuning's settings, then those of a 4-bit base."""


def _positions_without_prefix(
    model: nn.Module, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None
) -> torch.Tensor:
    """The position ids the text would get with no prefix.

    Given a cache, the embeddings number the text from the cache's length on, i.e. after the
    prefix: that shifts every pretrained position by num_virtual_tokens and overflows the
    position table at full length (512 + 20 > 514 for roberta-base). The prefix holds keys and
    values only, so the text keeps its own positions.
    """
    import torch

    embeddings = getattr(model.base_model, "embeddings", None)
    roberta_style = hasattr(embeddings, "create_position_ids_from_input_ids")
    if input_ids is not None and roberta_style:
        return embeddings.create_position_ids_from_input_ids(input_ids, embeddings.padding_idx)
    reference = input_ids if input_ids is not None else inputs_embeds
    batch, length = reference.shape[:2]
    start = embeddings.padding_idx + 1 if roberta_style else 0
    positions = torch.arange(start, start + length, device=reference.device)
    return positions.unsqueeze(0).expand(batch, -1)


def _forward_with_prefix(
    self: nn.Module,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    past_key_values: Any = None,
    **kwargs: Any,
) -> Any:
    """The model's own forward, taking the prefix as `past_key_values` (PEFT's name)."""
    if past_key_values is not None:
        backbone_args = inspect.signature(self.base_model.forward).parameters
        kwargs["cache" if "cache" in backbone_args else "past_key_values"] = past_key_values
        if position_ids is None:
            position_ids = _positions_without_prefix(self, input_ids, inputs_embeds)
    return type(self).forward(
        self,
        input_ids=input_ids,
        attention_mask=attention_mask,
        token_type_ids=token_type_ids,
        position_ids=position_ids,
        inputs_embeds=inputs_embeds,
        labels=labels,
        **kwargs,
    )


def accept_past_key_values(model: nn.Module) -> None:
    """Give this model instance a forward that accepts `past_key_values` (see the module doc)."""
    model.forward = types.MethodType(_forward_with_prefix, model)


def _check_prefix_reaches_attention(model: nn.Module) -> None:
    """Raise if changing the prefix leaves the logits unchanged (the encoder ignores it)."""
    import torch
    import transformers

    base = model.get_base_model()
    device = next(model.parameters()).device
    token = base.config.vocab_size - 1
    probe = {
        "input_ids": torch.full((1, 4), token, device=device),
        "attention_mask": torch.ones(1, 4, dtype=torch.long, device=device),
    }
    weight = model.prompt_encoder[model.active_adapter].embedding.weight
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            before = model(**probe).logits
            saved = weight.detach().clone()
            weight.add_(1.0)
            after = model(**probe).logits
            weight.copy_(saved)
    except (TypeError, ValueError) as exc:
        raise PeftbenchError(
            f"prefix_tuning does not work with {type(base).__name__} on transformers "
            f"{transformers.__version__}: {exc}"
        ) from exc
    finally:
        model.train(was_training)
    if torch.equal(before, after):
        raise PeftbenchError(
            f"prefix_tuning: {type(base).__name__} on transformers {transformers.__version__} "
            "ignores past_key_values, so the prefix never reaches attention and only the head "
            "would train; use prompt_tuning or ptuning for this model"
        )


def apply(model: nn.Module, params: PrefixTuningParams, context: MethodContext) -> nn.Module:
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    accept_past_key_values(model)
    config = PrefixTuningConfig(
        task_type=TaskType.SEQ_CLS,
        num_virtual_tokens=params.num_virtual_tokens,
        prefix_projection=params.prefix_projection,
        encoder_hidden_size=params.encoder_hidden_size,
        modules_to_save=head_modules(model, params.modules_to_save),
    )
    peft_model = get_peft_model(model, config)
    _check_prefix_reaches_attention(peft_model)
    return peft_model


METHOD = Method(
    name="prefix_tuning",
    description="Prefix tuning: trained keys and values prepended in every attention layer.",
    params_class=PrefixTuningParams,
    apply=apply,
    prepare_base=accept_past_key_values,
    not_mergeable=PROMPT_NOT_MERGEABLE,
)
