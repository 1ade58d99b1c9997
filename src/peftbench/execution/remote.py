"""What a Ray worker does for one run (this module does not import Ray: it is plain Python).

The worker gets the prepared data from the object store, writes it to its node's local disk,
runs the run with train.run_worker (which turns every failure into a record), and returns
everything the driver must write: the record, the predictions, the run's log, and the
trained model's files when the run directory is not on storage that the driver shares.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftbench.checkpoints import CHECKPOINT_DIR, claim_afresh, owned_by
from peftbench.data import PreparedData, save_prepared
from peftbench.logs import LOG
from peftbench.logs import configure as configure_logging
from peftbench.results import PREDICTIONS_FILE, RECORD_FILE, now_iso
from peftbench.run_spec import RunSpec
from peftbench.train import run_worker

STORAGE_MARKER = ".peftbench-storage"
LOG_FILE = "log.txt"
MODEL_DIR = "model"


@dataclass
class RemoteResult:
    run_id: str
    record: dict[str, Any] | None
    predictions: dict[str, Any] | None
    log: str
    # The trained model's files (relative path -> bytes) when the driver cannot see the run
    # directory; None when it is on shared storage (the files are already in place).
    model_files: dict[str, bytes] | None
    shared: bool
    model_dir: str | None  # where the trained model was saved (on the worker's node)
    node: str  # host name
    pid: int
    node_id: str | None = None  # the Ray node, set by the Ray task
    # When the worker process started and when it returned (Unix time, s), set by the Ray task.
    process_span: tuple[float, float] | None = None
    # The GPUs the worker was given (Ray sets CUDA_VISIBLE_DEVICES per task); None: not set.
    cuda_visible_devices: str | None = None


def sees_shared_storage(marker: Path, token: str) -> bool:
    """True when this node reads the marker the driver wrote: the storage is shared."""
    try:
        return marker.read_text(encoding="utf-8") == token
    except OSError:
        return False


def node_local_run_dir(spec: RunSpec) -> Path:
    """Where a run lives on a node without shared storage (stable, so a rerun here resumes)."""
    return Path(tempfile.gettempdir()) / "peftbench-runs" / spec.experiment / spec.run_id


def run_remote(
    spec: RunSpec,
    data: PreparedData,
    threads: int | None,
    work_dir: str,
    marker: str,
    token: str,
    fresh: bool = False,
    rank: int = 0,
) -> RemoteResult:
    """Do one run in this (fresh) worker process and return what the driver must keep.

    `work_dir` is where its checkpoints and model go when this node sees the storage that
    holds `marker` (written by the driver with `token`); else a directory on this node.
    Workers other than 0 of a multi-worker run start from a copy of the run's checkpoint
    in a scratch directory, and return only their record and log. `fresh` (--force): start
    from scratch, discarding a checkpoint left on this node or on the storage by an earlier
    invocation (one this invocation wrote, before its worker was lost, is resumed from)."""
    shared = sees_shared_storage(Path(marker), token)
    run_dir = Path(work_dir) if shared else node_local_run_dir(spec)
    if fresh and not rank:
        claim_afresh(run_dir, token)
    if rank:
        scratch_dir = node_local_run_dir(spec).with_name(f"{spec.run_id}-{rank}")
        own = not fresh or owned_by(run_dir, token)
        run_dir = _worker_copy(run_dir, scratch_dir, with_checkpoint=own)
    run_dir.mkdir(parents=True, exist_ok=True)
    if threads and not spec.training.num_threads:
        import torch

        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="peftbench-data-") as scratch:
        data_file = Path(scratch) / "data.pt"  # this node's copy, read by the run
        save_prepared(data, data_file)
        spec = dataclasses.replace(spec, data_cache=str(data_file), run_dir=str(run_dir))
        with _output_to(run_dir / LOG_FILE):
            # A rerun appends to the log of the attempt it resumes: each attempt opens with this
            # line. Logging is set up here, as a Ray worker would otherwise drop the line.
            configure_logging()
            LOG.info(
                f"=== {spec.run_id}, attempt started {now_iso()} on {socket.gethostname()} "
                f"(pid {os.getpid()}), run directory {run_dir} ===",
            )
            try:
                run_worker(spec)
            except SystemExit:  # run_worker has written the failure record
                pass
    return _collect(spec, run_dir, shared, rank)


def _collect(spec: RunSpec, run_dir: Path, shared: bool, rank: int) -> RemoteResult:
    """What the driver must keep of a finished run; a worker other than 0: record and log."""
    model_dir = run_dir / MODEL_DIR
    model_files = None
    if not shared and not rank and model_dir.is_dir():
        model_files = {
            str(path.relative_to(model_dir)): path.read_bytes()
            for path in sorted(model_dir.rglob("*"))
            if path.is_file()
        }
    result = RemoteResult(
        run_id=spec.run_id,
        record=_read_json(run_dir / RECORD_FILE),
        predictions=None if rank else _read_json(run_dir / PREDICTIONS_FILE),
        log=(run_dir / LOG_FILE).read_text(encoding="utf-8", errors="replace"),
        model_files=model_files,
        shared=shared,
        model_dir=str(model_dir) if model_dir.is_dir() and not rank else None,
        node=socket.gethostname(),
        pid=os.getpid(),
    )
    if rank:  # its scratch copy of the run
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def _worker_copy(main_dir: Path, directory: Path, with_checkpoint: bool) -> Path:
    """A fresh directory for a worker other than 0, holding the run's checkpoint (if any)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    checkpoint = main_dir / CHECKPOINT_DIR
    if with_checkpoint and checkpoint.is_dir():
        shutil.copytree(checkpoint, directory / CHECKPOINT_DIR)
    return directory


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


class _output_to:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to a file, appending."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = (os.dup(1), os.dup(2))
        self.handle = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        os.dup2(self.handle.fileno(), 1)  # native code and subprocesses
        os.dup2(self.handle.fileno(), 2)
        self.streams = (sys.stdout, sys.stderr)  # Python code, wherever sys.stdout pointed
        sys.stdout = sys.stderr = self.handle

    def __exit__(self, *exc: object) -> None:
        self.handle.flush()
        sys.stdout, sys.stderr = self.streams
        for fd, saved in zip((1, 2), self.saved, strict=True):
            os.dup2(saved, fd)
            os.close(saved)
        self.handle.close()
