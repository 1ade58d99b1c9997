"""Runs as Ray tasks: on this machine's cores and GPUs (embedded Ray) or on a cluster.

Each run is one task in a fresh worker process (`max_calls=1`), holding the resources of
`execution.resources_per_run`: its peak memory is its own, a crash or an out-of-memory kill
takes only that run, and on GPUs it sees only its own device(s). The driver puts the prepared
data into the object store once; the worker returns the record, predictions and log (see
remote.py), and the driver writes them under output_dir atomically. Only this module imports
Ray.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftbench import tracking
from peftbench.checkpoints import load_checkpoint
from peftbench.config import ExecutionConfig, ExperimentConfig
from peftbench.data import load_prepared
from peftbench.errors import PeftbenchError
from peftbench.execution.local import record_if_missing
from peftbench.execution.remote import (
    LOG_FILE,
    MODEL_DIR,
    STORAGE_MARKER,
    RemoteResult,
    run_remote,
)
from peftbench.logs import LOG
from peftbench.results import (
    PREDICTIONS_FILE,
    RECORD_FILE,
    RUNS_DIR,
    RunProgress,
    write_json_atomic,
)
from peftbench.run_spec import RunSpec

EMBEDDED_OBJECT_STORE_BYTES = 2**30  # holds the tokenised data many times over
CONNECT_TIMEOUT_S = 10


@dataclass
class Resources:
    cpus: float
    gpus: float

    def as_ray(self) -> dict[str, float]:
        return {"num_cpus": self.cpus, "num_gpus": self.gpus}

    def describe(self) -> str:
        return f"{{cpus: {self.cpus:g}, gpus: {self.gpus:g}}}"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PeftbenchError(
            "execution.backend: ray needs Ray, which is not installed here; fix: pip install "
            "'peftbench[ray]', or use execution.backend=local"
        ) from None
    return ray


def check_reachable(address: str) -> None:
    """Fail fast, with the address in the message, when nothing listens there."""
    if address == "auto":
        return
    host_port = address.removeprefix("ray://")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise PeftbenchError(
            f"execution.address: {address!r} is not an address; expected null (embedded Ray), "
            "'auto', 'HOST:PORT' or 'ray://HOST:PORT'"
        )
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise PeftbenchError(
            f"execution.address: cannot reach a Ray cluster at {address} ({exc}); fix: start "
            "one (ray start --head) or correct the address"
        ) from None


def alive_nodes(ray: Any) -> list[dict[str, float]]:
    return [node["Resources"] for node in ray.nodes() if node.get("Alive")]


def default_resources(execution: ExecutionConfig, nodes: list[dict[str, float]]) -> Resources:
    """1 GPU per run where there are GPUs, else an even share of a node's cores among
    max_concurrent runs (1 core each when max_concurrent is null)."""
    asked = execution.resources_per_run
    node_cpus = max(node.get("CPU", 0) for node in nodes)
    node_gpus = max(node.get("GPU", 0) for node in nodes)
    gpus = asked.gpus if asked.gpus is not None else (1.0 if node_gpus else 0.0)
    cpus = asked.cpus
    if cpus is None:
        if gpus and node_gpus:
            cpus = max(1, math.floor(node_cpus / node_gpus * gpus))
        else:  # fractional when more runs at once than cores are asked for
            share = node_cpus / (execution.max_concurrent or node_cpus)
            cpus = share if share < 1 else math.floor(share)
    return Resources(float(cpus), float(gpus))


def slots(nodes: list[dict[str, float]], need: Resources) -> int:
    """How many workers of `need` the cluster holds at once."""
    total = 0
    for node in nodes:
        fits = [math.floor(node.get("CPU", 0) / need.cpus + 1e-9)]
        if need.gpus:
            fits.append(math.floor(node.get("GPU", 0) / need.gpus + 1e-9))
        total += min(fits)
    return total


def _describe(nodes: list[dict[str, float]]) -> str:
    return "; ".join(f"{n.get('CPU', 0):g} CPUs, {n.get('GPU', 0):g} GPUs" for n in nodes)


class RayBackend:
    def __init__(self, ray: Any, config: ExperimentConfig, owns_ray: bool) -> None:
        self.ray, self.config, self.owns_ray = ray, config, owns_ray
        execution = config.execution
        nodes = alive_nodes(ray)
        self.resources = default_resources(execution, nodes)
        self.workers = execution.workers_per_run
        room = slots(nodes, self.resources)
        if room < self.workers:
            raise PeftbenchError(
                f"execution.resources_per_run {self.resources.describe()} x workers_per_run "
                f"{self.workers}: no room for that in the Ray cluster (nodes: "
                f"{_describe(nodes)}); fix: ask for less, or add nodes that have it"
            )
        self.capacity = execution.max_concurrent or max(1, room // self.workers)
        self.token = secrets.token_hex(16)
        self.data_refs: dict[str, Any] = {}
        self.runs: list[_Run] = []
        self.task = ray.remote(max_calls=1, max_retries=0)(run_task)
        LOG.info(
            f"Ray: {len(nodes)} node(s) ({_describe(nodes)}); each run takes "
            f"{self.resources.describe()}, {self.capacity} at once",
        )

    @classmethod
    def connect(cls, config: ExperimentConfig) -> RayBackend:
        """Start an embedded Ray, or join the cluster at execution.address (a Ray already
        initialised in this process is used as it is, and left running)."""
        ray = import_ray()
        address = config.execution.address
        if address is not None:
            check_reachable(address)
        owns_ray = not ray.is_initialized()
        if owns_ray and address is None:
            _start_embedded(ray)
        elif owns_ray:
            _join(ray, address)
        try:
            return cls(ray, config, owns_ray)
        except BaseException:
            if owns_ray:
                ray.shutdown()
            raise

    def close(self) -> None:
        if self.owns_ray:
            self.ray.shutdown()

    # ------------------------------------------------------------------------------------

    def running(self) -> int:
        return len(self.runs)

    def storage_root(self) -> Path:
        """Where runs keep checkpoints and models: output_dir, or execution.storage/<name>."""
        storage = self.config.execution.storage
        root = Path(storage) / self.config.name if storage else self.config.output_path
        return root.resolve()

    def start(self, spec: RunSpec, fresh: bool = False, attempt: int = 1) -> None:
        """Start a run's task(s); `fresh`: discard its checkpoints (here and on the worker's
        node); `attempt` > 1: a restart after its worker or node was lost."""
        root = self.storage_root()
        marker = root / STORAGE_MARKER
        if not marker.exists() or marker.read_text(encoding="utf-8") != self.token:
            root.mkdir(parents=True, exist_ok=True)
            _write_text_atomic(marker, self.token)
        data = self.data_refs.get(spec.data_cache)
        if data is None:
            data = self.data_refs[spec.data_cache] = self.ray.put(
                load_prepared(Path(spec.data_cache))
            )
        threads = max(1, int(self.resources.cpus))
        work_dir = str(root / RUNS_DIR / spec.run_id)
        args = (spec, data, threads, work_dir, str(marker), self.token, fresh)
        if self.workers > 1:
            from peftbench.execution.ray_group import start_group

            try:
                refs, group = start_group(self.ray, self.resources, self.workers, args)
            except self.ray.exceptions.RayError as exc:  # e.g. its workers never got room
                error = f"{type(exc).__name__}: {exc}"
                self.runs.append(_Run(spec, time.time(), [], None, fresh, attempt, error))
                return
        else:
            options = {"name": f"peftbench:{spec.run_id}", **self.resources.as_ray()}
            refs, group = [self.task.options(**options).remote(*args)], None
        self.runs.append(_Run(spec, time.time(), refs, group, fresh, attempt))

    def wait(self) -> list[RunSpec]:
        """Wait for a run whose workers all returned, or one of whose workers failed."""
        while True:  # short waits, so that Ctrl-C is seen at once
            pending = [ref for run in self.runs for ref in run.refs]
            ready, _ = self.ray.wait(pending, num_returns=len(pending), timeout=1.0)
            ready_set = set(ready)
            finished = [run for run in self.runs if _settled(self.ray, run, ready_set)]
            if finished:
                break
        for run in finished:
            self.runs.remove(run)
        return [run.spec for run in finished if self._keep(run)]

    def _keep(self, run: _Run) -> bool:
        """Write what a settled run returned, or start it again when its worker or node was
        lost and retries are left (then it is not finished: False)."""
        ready = self._stop(run)  # the workers still running wait for one that stopped
        results: list[RemoteResult] = []
        crash = None
        for ref in run.refs:
            if ref not in ready:
                continue
            try:
                results.append(self.ray.get(ref))
            except self.ray.exceptions.RayError as exc:  # the worker or its node died
                crash = exc
        failed = [r for r in results if not r.record or r.record["status"] != "success"]
        if crash is not None and not failed and run.attempt <= self.config.execution.max_retries:
            LOG.info(
                f"{run.spec.run_id}: its worker was lost ({type(crash).__name__}); starting it "
                f"again from its last epoch checkpoint (retry {run.attempt} of "
                f"{self.config.execution.max_retries})",
            )
            tracking.end_abandoned(run.spec, run.started, "failed")
            self.start(run.spec, fresh=run.fresh, attempt=run.attempt + 1)
            return False
        if failed or crash is None and len(results) == len(run.refs) > 0:
            if failed:
                result = failed[0]
            elif len(results) > 1:
                from peftbench.execution.ray_group import merge_workers

                result = merge_workers(results)
            else:
                result = results[0]
            write_result(run.spec, result, self.workers, run.attempt)
        message = " ".join(str(crash or run.error).strip().splitlines()[:3])[:500]
        record_if_missing(
            run.spec,
            run.started,
            "failed",
            type(crash).__name__ if crash else "NoRecord",
            f"the run's Ray workers ended without a result: {message}",
            self._progress_so_far(run.spec),
        )
        return True

    def _stop(self, run: _Run) -> list[Any]:
        """End a run's workers that are still running (only those: cancelling a finished
        task upsets Ray), free its reserved resources; return the finished workers' refs."""
        ready: list[Any] = []
        if run.refs:
            ready, running = self.ray.wait(run.refs, num_returns=len(run.refs), timeout=0)
            for ref in running:
                self.ray.cancel(ref, force=True)
        if run.group is not None:
            self.ray.util.remove_placement_group(run.group)
        return ready

    def _progress_so_far(self, spec: RunSpec) -> RunProgress:
        """The epochs in the run's last checkpoint, when the driver can read it."""
        checkpoint = load_checkpoint(self.storage_root() / RUNS_DIR / spec.run_id, spec.config_hash)
        return RunProgress(epochs=checkpoint["progress"]["epochs"] if checkpoint else [])

    def cancel(self) -> list[RunSpec]:
        message = "interrupted (Ctrl-C or SIGTERM); run again to resume from the last epoch"
        for run in self.runs:
            self._stop(run)
            progress = self._progress_so_far(run.spec)
            record_if_missing(run.spec, run.started, "canceled", "Interrupted", message, progress)
        canceled = [run.spec for run in self.runs]
        self.runs.clear()
        return canceled


@dataclass
class _Run:
    spec: RunSpec
    started: float
    refs: list[Any]  # one per worker
    group: Any  # the placement group holding a multi-worker run's workers together
    fresh: bool = False  # --force: started afresh (its retries too, see claim_afresh)
    attempt: int = 1  # 2, 3, ...: started again after its worker or node was lost
    error: str | None = None  # why its workers could not be started


def _settled(ray: Any, run: _Run, ready: set[Any]) -> bool:
    """All of a run's workers returned, or one failed (the others would wait for it)."""
    if all(ref in ready for ref in run.refs):
        return True
    for ref in run.refs:
        if ref in ready:
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError:
                return True
            if not result.record or result.record["status"] != "success":
                return True
    return False


def run_task(*args: Any) -> RemoteResult:
    """The Ray task of one run: remote.run_remote, plus the Ray node it ran on."""
    import psutil
    import ray

    result = run_remote(*args)
    result.node_id = ray.get_runtime_context().get_node_id()
    result.cuda_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    result.process_span = (psutil.Process().create_time(), time.time())
    return result


def write_result(spec: RunSpec, result: RemoteResult, workers: int = 1, attempts: int = 1) -> None:
    """Write what a worker returned under the driver's run directory (each file atomically)."""
    run_dir = Path(spec.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_text_atomic(run_dir / LOG_FILE, result.log)
    if result.model_files is not None:
        model_dir = run_dir / MODEL_DIR
        tmp = run_dir / f".{MODEL_DIR}.tmp"
        for name, content in result.model_files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(content)
        if model_dir.exists():
            import shutil

            shutil.rmtree(model_dir)
        tmp.rename(model_dir)
    if result.predictions is not None and result.record and result.record["status"] == "success":
        write_json_atomic(run_dir / PREDICTIONS_FILE, result.predictions)
    if result.record is not None:
        result.record["run_info"]["execution"] = {
            "backend": "ray",
            "node": result.node,
            "node_id": result.node_id,
            "pid": result.pid,
            "workers": workers,
            "attempts": attempts,  # > 1: its worker or node was lost and it was started again
            "shared_storage": result.shared,
            "model_dir": str(run_dir / MODEL_DIR) if result.model_files else result.model_dir,
            "process_span_s": result.process_span,  # worker process start, return (Unix time)
            "cuda_visible_devices": result.cuda_visible_devices,  # the run's own GPUs, if any
        }
        write_json_atomic(run_dir / RECORD_FILE, result.record)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _join(ray: Any, address: str) -> None:
    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    except Exception as exc:  # noqa: BLE001 - Ray raises several kinds
        hint = ""
        if "token" in str(exc).lower():
            hint = (
                "; fix: give this machine the cluster's token (RAY_AUTH_MODE=token and "
                "RAY_AUTH_TOKEN, or ~/.ray/auth_token)"
            )
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise PeftbenchError(
            f"execution.address: could not join the Ray cluster at {address}: "
            f"{type(exc).__name__}: {first_line[:300]}{hint}"
        ) from None


def _start_embedded(ray: Any) -> None:
    """A Ray instance on this machine, for this experiment only (no dashboard)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    ray.init(
        include_dashboard=False,
        object_store_memory=min(EMBEDDED_OBJECT_STORE_BYTES, int(memory * 0.3)),
        log_to_driver=False,
        logging_level="ERROR",
    )
