"""Predicted tensor memory of a run, before running it: no weights, no GPU, no real allocation.

The run's model (the real architecture, with the method applied, a 4-bit base quantised as
bitsandbytes does it) is built on the meta device and given fake tensors (PyTorch's
FakeTensorMode: shapes, dtypes and storages, no data). Two real training steps (the second one
with the optimiser state the first created) and one evaluation step then run under the same
`TensorMemoryTracker` that measures real runs, so the prediction counts what the operators
actually allocate: DoRA's weight norms, prefix tuning's key/value prefixes, the de-quantised
copies of 4-bit weights, autocast copies, AdamW's scratch tensors.

Memory grows linearly with the batch size at a given length (weights, gradients and optimiser
state are fixed; activations and most temporaries scale), so two batch sizes give the largest
batch that fits a budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

from peftbench.interrupts import raise_if_interrupted
from peftbench.memory import COMPONENTS, MIB, TensorMemoryTracker
from peftbench.methods import FourBitBase, Method, MethodContext
from peftbench.models import (
    DTYPES,
    build_random_model,
    quantization_config,
    set_attention_dropout,
)


@dataclass(frozen=True)
class StepShape:
    """One batch of the run: examples per optimiser step (per micro-batch), tokens per example."""

    train_batch: int
    eval_batch: int
    length: int


def _fake_model(
    architecture: Any,
    method: Method,
    params: Any,
    context: MethodContext,
    fake_mode: FakeTensorMode,
    device_type: str,
    attention: str,
) -> nn.Module:
    """The run's model with fake tensors in place of every parameter and buffer."""
    quantization = method.quantization(params)
    with torch.device("meta"):
        model = build_random_model(architecture, attention)
        if quantization is not None:
            _replace_linear_with_4bit(model, quantization, device_type)
    try:
        with torch.device("meta"):
            model = method.apply(model, params, context)
    except (RuntimeError, NotImplementedError):
        # The method runs the model while applying itself (prefix tuning checks that its prefix
        # reaches attention), which meta tensors cannot: apply it to real random weights, which
        # are then replaced by fake ones. The global RNG is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build_random_model(architecture, attention)
            if quantization is not None:
                _replace_linear_with_4bit(model, quantization, device_type)
            model = method.apply(model, params, context)
    with fake_mode:
        _fakeify(model)
    return model


def _replace_linear_with_4bit(
    model: nn.Module, quantization: FourBitBase, device_type: str
) -> None:
    from transformers.integrations.bitsandbytes import replace_with_bnb_linear

    config = quantization_config(quantization, device_type)
    replace_with_bnb_linear(
        model, modules_to_not_convert=config.llm_int8_skip_modules, quantization_config=config
    )
    # The same marks from_pretrained leaves on a quantised model, which PEFT checks.
    model.is_loaded_in_4bit = True
    model.hf_quantizer = None


def _fakeify(model: nn.Module) -> None:
    """Replace meta parameters and buffers by fake CPU tensors (shared ones stay shared), and
    quantise 4-bit weights with bitsandbytes' own (fake) quantisation operator."""
    import importlib.util

    linear4bit = None
    if importlib.util.find_spec("bitsandbytes") is not None:
        import bitsandbytes as bnb

        linear4bit = bnb.nn.Linear4bit
        _prepare_bitsandbytes_tables()
    made: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for name, parameter in list(module._parameters.items()):
            if parameter is None:
                continue
            if id(parameter) not in made:
                made[id(parameter)] = _fake_parameter(module, name, parameter, linear4bit)
            module._parameters[name] = made[id(parameter)]
        for name, buffer in list(module._buffers.items()):
            if buffer is not None:
                if id(buffer) not in made:
                    made[id(buffer)] = torch.zeros(buffer.shape, dtype=buffer.dtype, device="cpu")
                module._buffers[name] = made[id(buffer)]


def _prepare_bitsandbytes_tables() -> None:
    """bitsandbytes builds its double-quantisation code table on first use, reading values
    back as Python numbers, which fake tensors cannot do: build it from real numbers first."""
    import bitsandbytes.functional as bnbf

    if "dynamic" not in bnbf.name2qmap:
        with torch._subclasses.fake_tensor.unset_fake_temporarily():
            bnbf.name2qmap["dynamic"] = bnbf.create_dynamic_map()


def _fake_parameter(module: nn.Module, name: str, parameter: Any, linear4bit: Any) -> Any:
    data = torch.zeros(parameter.shape, dtype=torch.float32, device="cpu")
    if linear4bit is not None and isinstance(module, linear4bit) and name == "weight":
        import bitsandbytes as bnb

        # A fake tensor cannot become a Params4bit: keep the packed bytes in a plain parameter
        # and hang the quantisation state where Linear4bit.forward looks for it.
        packed, state = bnb.functional.quantize_4bit(
            data,
            blocksize=parameter.blocksize,
            compress_statistics=parameter.compress_statistics,
            quant_type=parameter.quant_type,
            quant_storage=parameter.quant_storage,
        )
        weight = nn.Parameter(packed, requires_grad=False)
        weight.quant_state = state
        module.quant_state = state
        module.support_avx512bf16_for_cpu = False  # as peftbench.models does for real runs
        return weight
    return nn.Parameter(data.to(parameter.dtype), requires_grad=parameter.requires_grad)


def _batch(size: int, length: int, vocab: int, num_labels: int) -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.zeros(size, length, dtype=torch.long).clamp_(max=vocab - 1),
        "attention_mask": torch.ones(size, length, dtype=torch.long),
        "labels": torch.zeros(size, dtype=torch.long).clamp_(max=num_labels - 1),
    }


def simulate_peaks(
    architecture: Any,
    method: Method,
    params: Any,
    training: Any,
    shape: StepShape,
    precision: str,
    device_type: str = "cpu",
) -> dict[str, dict[str, float]]:
    """Train and eval peaks (MiB by component) of `method` at `shape`, on fake tensors.

    `precision` is the computing dtype (fp32/bf16/fp16, as the run picks it); `device_type`
    the target ("cuda" computes 4-bit layers in bf16 and uses fused AdamW, as runs there do)."""
    architecture = _for_target(architecture, training, device_type)
    steps = max(2, training.epochs)
    context = MethodContext(total_steps=steps)
    fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
    model = _fake_model(
        architecture, method, params, context, fake_mode, device_type, training.attention
    )
    if training.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    with fake_mode, _ZeroScalars():
        return _run_steps(
            model, method, params, training, shape, precision, architecture, device_type == "cuda"
        )


class _ZeroScalars(TorchDispatchMode):
    """Fake tensors hold no values: a method that reads one back as a Python number reads zero
    (AdaLoRA's rank checks, an `.item()`, as from freshly initialised zero tensors), except that
    `torch.rand(...) > p` reads True: that is how LoHa and LoKr draw their module dropout, which
    is off by default."""

    def __init__(self) -> None:
        super().__init__()
        self._random: set[int] = set()
        self._drawn_true: set[int] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        try:
            out = func(*args, **(kwargs or {}))
        except DataDependentOutputException:
            if func is not torch.ops.aten._local_scalar_dense.default:
                raise
            dtype = args[0].dtype
            if dtype == torch.bool:
                return id(args[0]) in self._drawn_true
            return 0.0 if dtype.is_floating_point else 0
        if func is torch.ops.aten.rand.default:
            self._random.add(id(out))
        elif func is torch.ops.aten.gt.Scalar and id(args[0]) in self._random:
            self._drawn_true.add(id(out))
        return out


def _for_target(architecture: Any, training: Any, device_type: str) -> Any:
    architecture = type(architecture).from_dict(architecture.to_dict())
    set_attention_dropout(
        architecture, training.attention_dropout, torch.device(device_type), training.attention
    )
    if device_type == "cuda" and training.attention == "sdpa":
        # CUDA's SDPA kernels (flash, memory-efficient) apply attention dropout inside the
        # kernel and keep no length x length matrix; simulated on CPU, dropout would force the
        # unfused path that keeps several. Without dropout the CPU kernel keeps none either.
        set_attention_dropout(architecture, 0.0, torch.device("cpu"), "sdpa")
    return architecture


def _run_steps(
    model: nn.Module,
    method: Method,
    params: Any,
    training: Any,
    shape: StepShape,
    precision: str,
    architecture: Any,
    fused: bool,
) -> dict[str, dict[str, float]]:
    # As runs make it (peftbench.train): fused on CUDA, PyTorch's default elsewhere.
    optimizer = torch.optim.AdamW(
        method.optimizer_groups(model, params), lr=params.learning_rate, fused=fused or None
    )
    tracker = TensorMemoryTracker(model, optimizer)
    autocast = torch.autocast("cpu", dtype=DTYPES[precision], enabled=precision != "fp32")
    vocab, labels = architecture.vocab_size, architecture.num_labels
    micro = math.ceil(shape.train_batch / training.gradient_accumulation_steps)
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()
    with tracker.measure("train"):
        # Step 1 only creates the optimiser state (a tiny batch keeps it cheap); step 2 runs at
        # the real shape with that state alive, as every later step of a run does.
        for step, (size, length) in enumerate(((1, 8), (micro, shape.length)), start=1):
            raise_if_interrupted()  # a Ctrl-C the tracker's finalizers dropped
            for _ in range(min(2, training.gradient_accumulation_steps)):
                with autocast:
                    loss = model(**_batch(size, length, vocab, labels)).loss
                loss.backward()
                del loss
            torch.nn.utils.clip_grad_norm_(trainable, training.max_grad_norm)
            optimizer.step()
            if method.after_step is not None:
                method.after_step(model, step)
            optimizer.zero_grad(set_to_none=True)
    model.eval()
    raise_if_interrupted()
    with tracker.measure("eval"), torch.no_grad(), autocast:
        model(**_batch(shape.eval_batch, shape.length, vocab, labels))
    raise_if_interrupted()
    return tracker.peaks()


def largest_batch(peak_small: float, peak_large: float, small: int, large: int, budget: float):
    """From peaks (MiB) at two batch sizes, the largest batch whose peak stays within `budget`
    (None if even one example does not fit): memory is affine in the batch size."""
    per_example = (peak_large - peak_small) / (large - small)
    fixed = peak_small - per_example * small
    if per_example <= 0:
        return None if fixed > budget else math.inf
    batch = math.floor((budget - fixed) / per_example)
    return batch if batch >= 1 else None


def component_names() -> tuple[str, ...]:
    return COMPONENTS


__all__ = ["MIB", "StepShape", "largest_batch", "simulate_peaks"]
