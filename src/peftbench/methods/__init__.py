"""The method registry: one module per fine-tuning method in this folder, each exposing METHOD.

The folder is the list: a new method is a new module defining `METHOD = Method(...)`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from peftbench.errors import PeftbenchError

if TYPE_CHECKING:  # torch and PEFT load when a method is applied, not when the registry is read
    from torch import nn


@dataclass(frozen=True)
class MethodContext:
    """What a method may need to know about the run it is applied in."""

    total_steps: int  # optimiser steps the run will take (AdaLoRA's rank schedule needs it)


@dataclass(frozen=True)
class FourBitBase:
    """How a run's frozen base weights are loaded in 4-bit (bitsandbytes), as its method asks.

    Built by `Method.quantization` from the method's settings; read by peftbench.models (real
    loading) and peftbench.memory_plan (the fake model of the memory prediction)."""

    quant_type: str  # "nf4" or "fp4"
    double_quant: bool
    compute_dtype: str  # "auto", "fp32", "bf16" or "fp16"
    # Module names left unquantised: the head, trained in full and copied by PEFT.
    keep_full: tuple[str, ...]

    def compute_dtype_on(self, device_type: str) -> str:
        """The dtype of the de-quantised matmuls: as set, or for "auto" bf16 on CUDA, else fp32."""
        if self.compute_dtype != "auto":
            return self.compute_dtype
        return "bf16" if device_type == "cuda" else "fp32"


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
    # State the method keeps beside the model's parameters that an epoch checkpoint must carry
    # for a resumed run to go on exactly as an uninterrupted one (AdaLoRA's importance
    # averages and rank pattern): saved with the model, then put back into a fresh one.
    save_state: Callable[[nn.Module], dict[str, Any]] | None = None
    restore_state: Callable[[nn.Module, dict[str, Any]], None] | None = None
    # Readies a fresh base model before a saved adapter of this method is loaded onto it
    # (prefix tuning: a forward that accepts past_key_values); None = nothing to do.
    prepare_base: Callable[[nn.Module], None] | None = None
    # True when what a run saves is the whole model (full fine-tuning), not adapter + head.
    saves_whole_model: bool = False
    # Why the trained adapter cannot be merged into its base whatever the settings (prompt
    # methods: their virtual tokens are inputs, not weight deltas); None = it can be.
    not_mergeable: str | None = None

    def uses_4bit_base(self, params: Any) -> bool:
        """True when this run's base weights are loaded in 4-bit: always for QLoRA, and for any
        method whose params say `base: 4bit`."""
        return self.quantized_base or getattr(params, "base", "full") == "4bit"

    def quantization(self, params: Any) -> FourBitBase | None:
        """How to load the base weights for a run with `params`; None = in full precision."""
        if not self.uses_4bit_base(params):
            return None
        from peftbench.methods.targets import every_head_name

        return FourBitBase(
            quant_type=params.quant_type,
            double_quant=params.double_quant,
            compute_dtype=params.compute_dtype,
            keep_full=tuple(params.modules_to_save or every_head_name()),
        )

    def merge_blocker(self, params: Any) -> str | None:
        """Why a run's adapter cannot be merged into its base (PEFT's merge_and_unload), for the
        record; None when it can, or when the method has no adapter to merge."""
        if self.not_mergeable is not None:
            return self.not_mergeable
        if self.uses_4bit_base(params):
            return "4-bit base: merging would re-quantise the weights and change them"
        return None

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
