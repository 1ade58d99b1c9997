"""Tensor memory by component: what a run keeps alive, measured on any device (or fake tensors).

`TensorMemoryTracker` follows every tensor storage that a model's operators create (a
TorchDispatchMode sees each operator's outputs; a weak reference to each new storage tells when
it is freed) and files its bytes under one component:

- frozen_weights: parameters that do not train, buffers, and 4-bit quantisation state (a
  bitsandbytes 4-bit weight is a packed uint8 storage, so it counts at its stored size);
- trainable_weights: parameters that train;
- gradients: the `.grad` of trainable parameters (moved there when autograd accumulates them);
- optimizer_state: the optimiser's per-parameter state (AdamW's two moments and step counters);
- activations: tensors autograd saves for the backward pass;
- temporaries: everything else (intermediate results, de-quantised weights, autocast copies,
  the optimiser's scratch tensors).

Peaks are kept per phase ("train", "eval"): the live bytes of each component at the moment the
total was highest. Bookkeeping is a dictionary update per new storage and a handful of hooks; it
never draws random numbers, so measuring does not change what a seeded run computes. Storages
allocated outside the tracked operators (the data loader's batches, library workspaces) and
allocator rounding are not counted: on CUDA the caching allocator's own peaks sit beside it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from peftbench.results import MEMORY_COMPONENTS as COMPONENTS

MIB = 2**20
# Operators with which optimisers create their state (torch.optim's `_init_group`); outputs of
# other operators during a step are the step's scratch tensors.
_STATE_FACTORIES = {"zeros_like", "empty_like", "zeros", "empty", "full", "scalar_tensor", "ones"}


def _storages(value: Any) -> Iterator[torch.UntypedStorage]:
    for leaf in tree_flatten(value)[0]:
        if isinstance(leaf, torch.Tensor):
            yield leaf.untyped_storage()


def quantization_state_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The tensors a bitsandbytes 4-bit weight keeps beside its packed bytes (absmax, code, and
    the nested state of double quantisation)."""
    tensors = []
    for sub in module.modules():
        state = getattr(getattr(sub, "weight", None), "quant_state", None)
        while state is not None:
            tensors += [
                t
                for t in (getattr(state, n, None) for n in ("absmax", "code", "offset"))
                if isinstance(t, torch.Tensor)
            ]
            state = getattr(state, "state2", None)
    return tensors


class _Dispatch(TorchDispatchMode):
    def __init__(self, tracker: TensorMemoryTracker) -> None:
        super().__init__()
        self.tracker = tracker

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        tracker = self.tracker
        component = "temporaries"
        if tracker._in_optimizer_step and func.__name__.split(".")[0] in _STATE_FACTORIES:
            component = "optimizer_state"
        for storage in _storages(out):
            tracker._add(storage, component)
        return out


class TensorMemoryTracker:
    """Live tensor bytes by component, and the peak of each phase. Use `measure(phase)` around a
    training or evaluation loop; `peaks()` gives, per phase, the components at the peak (MiB)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        self._live: dict[int, list] = {}  # id(storage) -> [bytes, component]
        self.totals = dict.fromkeys(COMPONENTS, 0)
        self.total = 0
        self._peaks: dict[str, tuple[int, dict[str, int]]] = {}
        self._phase: str | None = None
        self._in_optimizer_step = False
        self._model, self._optimizer = model, optimizer
        self._hooks: list[Any] = []
        for parameter in model.parameters():
            self._add(parameter.untyped_storage(), self._weight_component(parameter))
            if parameter.grad is not None:
                self._add(parameter.grad.untyped_storage(), "gradients")
        for tensor in list(model.buffers()) + quantization_state_tensors(model):
            self._add(tensor.untyped_storage(), "frozen_weights")
        self._adopt_optimizer_state()

    @staticmethod
    def _weight_component(parameter: torch.Tensor) -> str:
        return "trainable_weights" if parameter.requires_grad else "frozen_weights"

    # -- bookkeeping -------------------------------------------------------------------------
    def _add(self, storage: torch.UntypedStorage, component: str) -> None:
        key = id(storage)
        if key in self._live:
            return
        size = storage.nbytes()
        self._live[key] = [size, component]
        self.totals[component] += size
        self.total += size
        weakref.finalize(storage, self._free, key)
        if self._phase is not None:
            peak = self._peaks.get(self._phase)
            if peak is None or self.total > peak[0]:
                self._peaks[self._phase] = (self.total, dict(self.totals))

    def _free(self, key: int) -> None:
        entry = self._live.pop(key, None)
        if entry is not None:
            self.totals[entry[1]] -= entry[0]
            self.total -= entry[0]

    def _move(self, tensor: torch.Tensor, component: str, only_from: str | None = None) -> None:
        storage = tensor.untyped_storage()
        entry = self._live.get(id(storage))
        if entry is None:
            self._add(storage, component)
        elif entry[1] != component and (only_from is None or entry[1] == only_from):
            self.totals[entry[1]] -= entry[0]
            self.totals[component] += entry[0]
            entry[1] = component

    def _adopt_optimizer_state(self) -> None:
        if self._optimizer is None:
            return
        for state in self._optimizer.state.values():
            for value in state.values():
                if isinstance(value, torch.Tensor):
                    self._move(value, "optimizer_state")

    # -- hooks -------------------------------------------------------------------------------
    def _on_saved(self, tensor: torch.Tensor) -> torch.Tensor:
        self._move(tensor, "activations", only_from="temporaries")
        return tensor

    def _on_grad(self, parameter: torch.Tensor) -> None:
        if parameter.grad is not None:
            self._move(parameter.grad, "gradients")

    def _install_hooks(self) -> None:
        for parameter in self._model.parameters():
            if parameter.requires_grad:
                self._hooks.append(parameter.register_post_accumulate_grad_hook(self._on_grad))
        if self._optimizer is not None:
            self._hooks.append(self._optimizer.register_step_pre_hook(self._before_step))
            self._hooks.append(self._optimizer.register_step_post_hook(self._after_step))

    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._in_optimizer_step = True

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._in_optimizer_step = False
        self._adopt_optimizer_state()

    @contextmanager
    def measure(self, phase: str) -> Iterator[TensorMemoryTracker]:
        """Track the operators run inside, keeping `phase`'s peak (across repeated entries)."""
        self._phase = phase
        self._adopt_optimizer_state()  # restored from a checkpoint since the last phase
        peak = self._peaks.get(phase)
        if peak is None or self.total > peak[0]:
            self._peaks[phase] = (self.total, dict(self.totals))
        self._install_hooks()
        try:
            with _Dispatch(self), torch.autograd.graph.saved_tensors_hooks(self._on_saved, _same):
                yield self
        finally:
            for hook in self._hooks:
                hook.remove()
            self._hooks.clear()
            self._in_optimizer_step = False
            self._phase = None

    def peaks(self) -> dict[str, dict[str, float]]:
        """Per phase: each component's MiB at the phase's peak, and their sum as `total_mib`."""
        result = {}
        for phase, (total, components) in self._peaks.items():
            entry = {name: components[name] / MIB for name in COMPONENTS}
            entry["total_mib"] = total / MIB
            result[phase] = entry
        return result

    def summary(self) -> dict[str, Any]:
        """The record's `tensor_mib` section: per-phase peaks by component, and the run's peak."""
        peaks = self.peaks()
        rounded = {
            phase: {name: round(value, 3) for name, value in entry.items()}
            for phase, entry in peaks.items()
        }
        return {
            "unit": "MiB",
            "tracked": True,
            **rounded,
            "peak_mib": round(max((e["total_mib"] for e in peaks.values()), default=0.0), 3),
        }


def _same(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


class _Untracked:
    """Stands in for the tracker where operators cannot be followed (a compiled model)."""

    def __init__(self, why: str) -> None:
        self.why = why

    @contextmanager
    def measure(self, phase: str) -> Iterator[None]:
        yield None

    def summary(self) -> dict[str, Any]:
        return {"unit": "MiB", "tracked": False, "why": self.why}


def tensor_memory_tracker(
    model: nn.Module, optimizer: torch.optim.Optimizer, compiled: bool = False
) -> TensorMemoryTracker | _Untracked:
    """The tracker a run uses: a TensorMemoryTracker, or none for a torch.compile'd model (its
    fused graphs allocate inside compiled code that the tracker cannot see)."""
    if compiled:
        return _Untracked("training.compile is on: compiled graphs hide their allocations")
    return TensorMemoryTracker(model, optimizer)
