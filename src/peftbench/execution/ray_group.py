"""One run over several Ray workers, data-parallel (execution.workers_per_run > 1).

The workers are reserved together in a placement group (packed onto as few nodes as
possible), find each other through rank 0's address, and train with DDP (peftbench.distributed:
gloo on CPU, NCCL on GPUs). Worker 0's result is the run's; the others add their memory, so
that the record states the workers and the per-worker and total memory.
"""

from __future__ import annotations

import socket
from typing import Any

from peftbench.execution.remote import RemoteResult, run_remote

GROUP_READY_TIMEOUT_S = 600


def _rendezvous() -> tuple[str, int]:
    """This node's address and a free port on it, for rank 0 to listen on."""
    import ray

    with socket.socket() as sock:
        sock.bind(("", 0))
        port = sock.getsockname()[1]
    return ray.util.get_node_ip_address(), port


def run_rank(rank: int, world: int, master: str, port: int, use_cuda: bool, *args: Any):
    """The Ray task of one worker of a multi-worker run."""
    import ray

    from peftbench import distributed

    distributed.init(master, port, rank, world, use_cuda)
    try:
        result = run_remote(*args, rank=rank)
    finally:
        distributed.close()
    result.node_id = ray.get_runtime_context().get_node_id()
    return result


def start_group(ray: Any, resources: Any, workers: int, args: tuple) -> tuple[list[Any], Any]:
    """Reserve `workers` x resources together, then start one task per worker."""
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    bundle = {"CPU": resources.cpus, **({"GPU": resources.gpus} if resources.gpus else {})}
    group = placement_group([bundle] * workers, strategy="PACK")
    ray.get(group.ready(), timeout=GROUP_READY_TIMEOUT_S)

    def on(index: int) -> PlacementGroupSchedulingStrategy:
        return PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index)

    master, port = ray.get(
        ray.remote(num_cpus=0)(_rendezvous).options(scheduling_strategy=on(0)).remote()
    )
    task = ray.remote(max_calls=1, max_retries=0)(run_rank)
    spec = args[0]
    refs = [
        task.options(
            name=f"peftbench:{spec.run_id}:worker{rank}",
            scheduling_strategy=on(rank),
            **resources.as_ray(),
        ).remote(rank, workers, master, port, bool(resources.gpus), *args)
        for rank in range(workers)
    ]
    return refs, group


def merge_workers(results: list[RemoteResult]) -> RemoteResult:
    """Worker 0's result, with every worker's peak memory and their total, and all logs."""
    main = results[0]
    memories = [dict(r.record["measurements"]["memory"]) for r in results]  # copies: no cycle
    memory = main.record["measurements"]["memory"]
    memory["per_worker"] = memories
    for name in ("peak_rss_mb", "cuda_peak_allocated_mb", "cuda_peak_reserved_mb"):
        values = [m.get(name) for m in memories]
        memory[f"total_{name}"] = (
            round(sum(values), 1) if all(v is not None for v in values) else None
        )
    main.log += "".join(
        f"\n=== worker {rank} ===\n{r.log}" for rank, r in enumerate(results[1:], start=1)
    )
    return main
