"""Epoch checkpoints: everything needed to resume a run exactly where its last epoch ended.

A checkpoint holds the trained parameters (only the trainable ones: an adapter and its head,
or the whole model for full fine-tuning), the optimiser, scheduler and loss-scaler states,
the state a method keeps beside its parameters (AdaLoRA's), the random-number generators, and
the epochs' metrics so far. It is written atomically after each epoch and removed when the run
succeeds.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from peftbench.loop import RunState

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.pt"
OWNER_FILE = "owner"  # the invocation that started this checkpoint afresh (--force)
# What a checkpoint holds; one written by an earlier peftbench without all of it (format 1 had
# no method state) is not resumed from: the run starts again rather than go on inexactly.
FORMAT = 2


def checkpoint_file(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / STATE_FILE


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (what the run changed)."""
    return {
        name: parameter.detach().cpu().clone()
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
    }


def rng_states() -> dict[str, Any]:
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(state: RunState) -> None:
    """Write the checkpoint of a finished epoch (temporary file, then rename)."""
    path = checkpoint_file(Path(state.spec.run_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    progress = state.progress
    save_method = state.method.save_state
    checkpoint = {
        "format": FORMAT,
        "config_hash": state.spec.config_hash,
        "model": trainable_state(state.model),
        "method": None if save_method is None else save_method(state.model),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": state.scaler.state_dict(),
        "rng": rng_states(),
        "progress": {
            "epochs": progress.epochs,
            "totals": progress.totals,
            "predictions": state.predictions,
        },
    }
    tmp = path.with_suffix(".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)


def load_checkpoint(run_dir: Path, config_hash: str) -> dict[str, Any] | None:
    """The run's checkpoint, or None when there is none, it is unreadable, or from another
    config or format."""
    path = checkpoint_file(run_dir)
    if not path.exists():
        return None
    try:
        # Our own file: it holds RNG states (numpy arrays, tuples), not only tensors.
        state = torch.load(path, weights_only=False)
    except Exception:  # a torn or corrupt checkpoint: start the run again
        return None
    if state.get("config_hash") != config_hash or state.get("format") != FORMAT:
        return None
    return state


def restore(checkpoint: dict[str, Any], state: RunState) -> None:
    """Put a checkpoint's states back into the run: weights, optimiser, method state, RNGs,
    epochs so far."""
    parameters = dict(state.model.named_parameters())
    with torch.no_grad():
        for name, value in checkpoint["model"].items():
            parameters[name].copy_(value.to(parameters[name].device))
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    state.scheduler.load_state_dict(checkpoint["scheduler"])
    state.scaler.load_state_dict(checkpoint["scaler"])
    if state.method.restore_state is not None:
        state.method.restore_state(state.model, checkpoint["method"])
    restore_rng_states(checkpoint["rng"])
    saved = checkpoint["progress"]
    state.progress.epochs, state.progress.totals = saved["epochs"], saved["totals"]
    state.predictions = saved["predictions"]
    state.progress.resumed_from_epoch = len(state.progress.epochs)


def remove_checkpoint(run_dir: Path) -> None:
    shutil.rmtree(Path(run_dir) / CHECKPOINT_DIR, ignore_errors=True)


def owned_by(run_dir: Path, owner: str) -> bool:
    """True when invocation `owner` started this run's checkpoint afresh (claim_afresh)."""
    try:
        return (Path(run_dir) / CHECKPOINT_DIR / OWNER_FILE).read_text(encoding="utf-8") == owner
    except OSError:
        return False


def claim_afresh(run_dir: Path, owner: str) -> None:
    """--force for invocation `owner`: discard the run's checkpoint unless this invocation
    wrote it, and mark what is written from now on as its own. So a run that is started
    again after its worker was lost resumes from its own epochs, never from a checkpoint of
    an earlier invocation that --force discards (were its first worker lost before it could
    discard that one)."""
    if owned_by(run_dir, owner):
        return
    remove_checkpoint(run_dir)
    directory = Path(run_dir) / CHECKPOINT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    (directory / OWNER_FILE).write_text(owner, encoding="utf-8")
