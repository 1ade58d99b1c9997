"""Data-parallel training of one run over several worker processes (DDP; gloo on CPU).

train.py and loop.py call these helpers; outside a process group each is the identity,
so a one-worker run is unchanged. Inside one (execution.workers_per_run > 1, set up by the
Ray backend), every optimiser step still sees `train_batch_size` examples: each worker takes
its share of the step's examples and weighs them by world size / (global batch size); DDP
averages the gradients over the workers, so the result is exactly the global batch's mean
gradient. Evaluation splits the examples across workers and gathers every prediction.

Ending the group must not hang. gloo's worker threads let go of each finished collective,
and freeing a tensor that Python has seen takes the GIL; the group's destructor joins those
threads while holding the GIL (seen: rank 0 stuck for good in ~ProcessGroupGloo after its
last all_reduce). So DDP's own C++ gradient exchange is used (no Python hook), and the
collectives here keep their work handles (`_issued`): a worker thread then never frees one.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

TIMEOUT = timedelta(minutes=30)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def init(master: str, port: int, rank_: int, world: int, use_cuda: bool) -> None:
    """Join the run's process group (called by each worker before training)."""
    dist.init_process_group(
        "nccl" if use_cuda else "gloo",
        init_method=f"tcp://{master}:{port}",
        rank=rank_,
        world_size=world,
        timeout=TIMEOUT,
    )


def close() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model as DDP (buffers are not broadcast: evaluation batches differ per worker)."""
    if world_size() == 1:
        return model
    device = next(model.parameters()).device
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, broadcast_buffers=False
    )


def gradient_weight() -> int:
    """What each worker multiplies its loss by: DDP averages the workers' gradients, and the
    step's gradient is their sum (each worker's examples already weigh 1 / global batch)."""
    return world_size()


def shard(parts: list[list[int]]) -> list[list[int]]:
    """This worker's examples of each micro-batch (empty where a micro-batch has fewer
    examples than there are workers)."""
    world = world_size()
    if world == 1:
        return parts
    return [part[rank() :: world] for part in parts]


def exchange_gradients(model: torch.nn.Module, now: bool) -> contextlib.AbstractContextManager:
    """Around a micro-batch's forward and backward: let DDP exchange the gradients only when
    `now` (the step's last micro-batch). Exchanging after every micro-batch would combine the
    gradients already combined again, counting the step's earlier micro-batches once per worker."""
    if now or not isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


# The handles of the latest collectives issued here, so that gloo's worker threads never free
# one (see the module's doc); a thread lets go of a handle just after the collective ends.
_issued: deque[Any] = deque(maxlen=1000)


def _device() -> torch.device:
    """Where this group's collectives take their tensors (NCCL: the current GPU)."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _wait(work: Any) -> None:
    _issued.append(work)
    work.wait()


def all_sum(value: float) -> float:
    """The sum of a number over the workers."""
    if world_size() == 1:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_device())
    _wait(dist.all_reduce(tensor, async_op=True))
    return float(tensor.item())


def evaluate(
    evaluate_split: Callable[[Any], tuple[dict[str, float], list[int]]], split: Any
) -> tuple[dict[str, float], list[int]]:
    """Evaluate `split` with each worker on its share (every world-th example, from its rank);
    gather all predictions in order."""
    world = world_size()
    if world == 1:
        return evaluate_split(split)
    total = len(split)
    mine = list(range(rank(), total, world))
    metrics, predictions = evaluate_split(split.select(mine))
    # Each worker sends its predictions (padded to the longest share) and its loss sum.
    longest = len(range(0, total, world))
    sent = torch.full((longest + 1,), -1.0, dtype=torch.float64)
    sent[: len(predictions)] = torch.tensor(predictions, dtype=torch.float64)
    sent[-1] = metrics["loss"] * len(mine)
    sent = sent.to(_device())
    received = [torch.empty_like(sent) for _ in range(world)]
    _wait(dist.all_gather(received, sent, async_op=True))
    ordered = [0] * total
    loss = 0.0
    for worker, values in enumerate(received):
        share = len(range(worker, total, world))
        ordered[worker::world] = [int(v) for v in values[:share].tolist()]
        loss += float(values[-1].item())
    from peftbench.class_metrics import classification_metrics

    metrics = classification_metrics(split.labels, ordered)
    metrics["loss"] = loss / total
    return metrics, ordered
