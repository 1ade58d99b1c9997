"""Pieces shared by the PEFT-based methods."""

from __future__ import annotations

from torch import nn


def head_modules(model: nn.Module, requested: list[str] | None) -> list[str]:
    """Modules trained in full next to the adapter: the classification head by default.

    PEFT's sequence-classification task trains `classifier` only. RoBERTa's classifier already
    holds its dense layer; BERT-family models put that dense layer (+ tanh) in a separate
    `pooler`, which would stay frozen at its pre-training values. Training it as well gives
    both families the same head, and it is what lets adapters on BERT models learn (see
    ../shared/docs/stack-notes.md: LoRA on MiniLM 58.7% -> 78.2% at the same learning rate).
    """
    if requested is not None:
        return list(requested)
    names = ["classifier"]
    base = getattr(model, "base_model", None)
    if getattr(base, "pooler", None) is not None:
        names.append("pooler")
    return names


def freeze_all(model: nn.Module) -> None:
    for parameter in model.parameters():
        parameter.requires_grad_(False)
