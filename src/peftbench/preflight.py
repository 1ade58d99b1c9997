"""Checks of an experiment against this machine, before anything is run or written.

The config validates on any machine (`peftbench plan` works anywhere); whether this machine
can run it is asked here, once, so a device, precision or package it lacks is one error at
the start instead of every run failing in turn.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from peftbench.config import ExperimentConfig, TrainingConfig
from peftbench.errors import PeftbenchError
from peftbench.logs import LOG

# tracking.report_to entry -> (module to import, extra that installs it)
TRACKER_PACKAGES = {
    "mlflow": ("mlflow", "pip install 'peftbench[mlflow]'"),
    "tensorboard": ("tensorboard", "pip install 'peftbench[tensorboard]'"),
    "wandb": ("wandb", "pip install 'peftbench[wandb]', then `wandb login` or WANDB_MODE=offline"),
}


def check_machine(config: ExperimentConfig) -> None:
    """Raise PeftbenchError naming what this machine lacks for `config`, and the fix."""
    _check_device_and_precision(config)
    _check_4bit(config)
    for tracker in config.tracking.report_to:
        module, fix = TRACKER_PACKAGES[tracker]
        if importlib.util.find_spec(module) is None:
            raise PeftbenchError(
                f"tracking.report_to: {tracker} is not installed; fix: {fix}, or remove "
                f"{tracker} from tracking.report_to"
            )
    if "wandb" in config.tracking.report_to and not _wandb_configured():
        raise PeftbenchError(
            "tracking.report_to: wandb has no login here (and W&B would ask for one in the "
            "middle of the run); fix: `wandb login` or WANDB_API_KEY, or WANDB_MODE=offline "
            "to save the runs for a later `wandb sync`"
        )


def _wandb_configured() -> bool:
    """A W&B key (environment or ~/.netrc, where `wandb login` keeps it), or a mode that
    needs none."""
    if os.environ.get("WANDB_MODE") in ("offline", "disabled") or os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text(encoding="utf-8")
    except OSError:
        return False


def _check_device_and_precision(config: ExperimentConfig) -> None:
    import torch

    training = config.training
    has_cuda = torch.cuda.is_available()
    if training.device == "cuda" and not has_cuda:
        raise PeftbenchError(
            "training.device: cuda, but this machine has no CUDA device PyTorch can use "
            f"(torch {torch.__version__}); fix: training.device=cpu (or auto), or install a "
            "CUDA build of torch on a machine with an NVIDIA GPU (see README)"
        )
    on_cuda = training.device == "cuda" or (training.device == "auto" and has_cuda)
    if on_cuda and training.precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise PeftbenchError(
            f"training.precision: bf16, but {torch.cuda.get_device_name(0)} does not compute "
            "bf16; fix: training.precision=fp16 (or auto)"
        )
    if not on_cuda and training.precision in ("bf16", "fp16"):
        from peftbench.measure import cpu_has_native_bf16

        if training.precision == "fp16" or not cpu_has_native_bf16():
            LOG.warning(
                f"training.precision: {training.precision} on this CPU is emulated (slower than "
                "fp32); auto picks what the CPU runs natively"
            )


def check_kept_precision(config: ExperimentConfig) -> None:
    """Refuse to resume an experiment whose finished runs computed in another precision.

    `training.precision: auto` resolves on the machine that trains (bf16 or fp16 on a GPU,
    bf16 on a CPU with AVX-512 BF16, fp32 on other CPUs) and the config hash records `auto`,
    not what it resolved to; so without this check, runs kept from one machine and runs
    trained on another would be compared as if only the method differed. Runs on this machine
    (the local backend, or an embedded Ray) are checked; a Ray cluster joined by address is
    not, as its nodes resolve `auto` on their own (the report warns when precisions differ).
    """
    from peftbench.results import RUNS_DIR, load_records

    training = config.training
    joined_cluster = config.execution.backend == "ray" and config.execution.address is not None
    if training.precision != "auto" or joined_cluster:
        return
    here, device_type = auto_precision_here(training)
    records, _ = load_records(config.output_path)
    other: dict[str, list[str]] = {}
    for record in records:
        resolved = auto_precision_of(record)
        if record["status"] == "success" and resolved not in (None, here):
            other.setdefault(resolved, []).append(record["run_id"])
    if not other:
        return
    kept = "; ".join(f"{', '.join(runs)} in {p}" for p, runs in sorted(other.items()))
    machine = _precision_reason(here, device_type)
    raise PeftbenchError(
        f"{config.output_path} holds finished runs whose training.precision: auto computed in "
        f"another precision than it does here ({here}, {machine}): {kept}. "
        "Resuming would compare methods that differ in precision as well as in method; "
        "fix: resume on a machine where auto resolves as it did for those runs, or delete "
        f"those runs' directories under {config.output_path / RUNS_DIR} to redo only them here "
        f"in {here}, or pass --force to redo every run here, or choose another output_dir"
    )


def auto_precision_here(training: TrainingConfig) -> tuple[str, str]:
    """(precision, device type) that `precision: auto` resolves to for a run on this machine."""
    from peftbench.train import pick_device, pick_precision

    device = pick_device(training.device)
    return pick_precision("auto", device), device.type


def auto_precision_of(record: dict[str, Any]) -> str | None:
    """The precision a run of `precision: auto` computed in, from its record (None for a run
    whose config chose a precision, or a record without one)."""
    config = record.get("run_info", {}).get("config", {})
    if config.get("training", {}).get("precision") != "auto":
        return None
    return record.get("train_info", {}).get("precision")


def _precision_reason(precision: str, device_type: str) -> str:
    if device_type == "cuda":
        import torch

        return f"on {torch.cuda.get_device_name(0)}"
    return f"a CPU {'with' if precision == 'bf16' else 'without'} AVX-512 BF16 or AMX"


def _check_4bit(config: ExperimentConfig) -> None:
    from peftbench.methods import get_method

    four_bit = [e.label for e in config.methods if get_method(e.method).uses_4bit_base(e.params)]
    if four_bit and importlib.util.find_spec("bitsandbytes") is None:
        raise PeftbenchError(
            f"methods {', '.join(four_bit)} need 4-bit weights from bitsandbytes, which is not "
            "installed; fix: pip install 'peftbench[qlora]' (CUDA or x86-64 CPU), or run the "
            "other methods with --methods"
        )
