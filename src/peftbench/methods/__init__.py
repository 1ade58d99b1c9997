"""The method registry: one module per fine-tuning method in this folder, each exposing METHOD.

The folder is the list: a new method is a new module defining `METHOD = Method(...)`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from peftbench.errors import PeftbenchError


@dataclass(frozen=True)
class MethodContext:
    """What a method may need to know about the run it is applied in."""

    total_steps: int  # optimiser steps the run will take (AdaLoRA's rank schedule needs it)


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    # Dataclass of the method's hyperparameters, with documented defaults; every one of them
    # has `learning_rate`.
    params_class: type
    # (model with a sequence-classification head, params, context) -> the model to train,
    # with exactly the method's parameters left trainable.
    apply: Callable[[nn.Module, Any, MethodContext], nn.Module]
    # True when the base weights must be loaded quantised to 4 bits (QLoRA).
    quantized_base: bool = False
    # Optimiser parameter groups, for methods that train parts at different rates (LoRA+);
    # None = one group of every trainable parameter at params.learning_rate.
    param_groups: Callable[[nn.Module, Any], list[dict]] | None = None
    # Called after every optimiser step with the 1-based step number (AdaLoRA's rank updates).
    after_step: Callable[[nn.Module, int], None] | None = None

    def uses_4bit_base(self, params: Any) -> bool:
        """True when this run's base weights are loaded in 4-bit: always for QLoRA, and for any
        method whose params say `base: 4bit`."""
        return self.quantized_base or getattr(params, "base", "full") == "4bit"

    def optimizer_groups(self, model: nn.Module, params: Any) -> list[dict]:
        """The parameter groups to give the optimiser."""
        if self.param_groups is not None:
            return self.param_groups(model, params)
        trainable = [p for p in model.parameters() if p.requires_grad]
        return [{"params": trainable, "lr": params.learning_rate}]


def _discover() -> dict[str, Method]:
    registry: dict[str, Method] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        method = getattr(module, "METHOD", None)
        if isinstance(method, Method):
            registry[method.name] = method
    return registry


_REGISTRY = _discover()


def method_names() -> list[str]:
    return list(_REGISTRY)


def get_method(name: str, where: str = "method") -> Method:
    """The registered method called `name`, or an error listing the registered ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise PeftbenchError(
            f"{where}: unknown method {name!r}; registered methods: {', '.join(_REGISTRY)} "
            "(run `peftbench methods` for their settings)"
        ) from None
