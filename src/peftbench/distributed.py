"""Data-parallel training of one run over several worker processes (DDP; gloo on CPU).

train.py and loop.py call these helpers; outside a process group each is the identity,
so a one-worker run is unchanged. Inside one (execution.workers_per_run > 1, set up by the
Ray backend), every optimiser step still sees `train_batch_size` examples: each worker takes
its share of the step's examples, the gradients are summed (not averaged) across workers, and
since each worker weighs its examples by 1 / (global batch size), the summed gradient is
exactly the global batch's mean gradient. Evaluation splits the examples across workers and
gathers every prediction.
"""

from __future__ import annotations

import contextlib
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


def _sum_gradients(state, bucket):  # unannotated: DDP checks annotations as objects
    future = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return future.then(lambda done: done.value()[0])


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model as DDP with summed gradients (buffers are not broadcast: evaluation batches
    differ per worker)."""
    if world_size() == 1:
        return model
    device = next(model.parameters()).device
    device_ids = [device.index] if device.type == "cuda" else None
    ddp = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, broadcast_buffers=False
    )
    ddp.register_comm_hook(None, _sum_gradients)
    return ddp


def shard(parts: list[list[int]]) -> list[list[int]]:
    """This worker's examples of each micro-batch (empty where a micro-batch has fewer
    examples than there are workers)."""
    world = world_size()
    if world == 1:
        return parts
    return [part[rank() :: world] for part in parts]


def exchange_gradients(model: torch.nn.Module, now: bool) -> contextlib.AbstractContextManager:
    """Around a micro-batch's forward and backward: let DDP exchange the gradients only when
    `now` (the step's last micro-batch). Exchanging after every micro-batch would sum the
    gradients already summed again, counting the step's earlier micro-batches once per worker."""
    if now or not isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


def all_sum(value: float) -> float:
    """The sum of a number over the workers."""
    if world_size() == 1:
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor.item())


def evaluate(
    evaluate_split: Callable[[Any], tuple[dict[str, float], list[int]]], split: Any
) -> tuple[dict[str, float], list[int]]:
    """Evaluate `split` with each worker on its share; gather all predictions in order."""
    world = world_size()
    if world == 1:
        return evaluate_split(split)
    mine = list(range(rank(), len(split), world))
    metrics, predictions = evaluate_split(split.select(mine))
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, (mine, predictions, metrics["loss"] * len(mine)))
    ordered = [0] * len(split)
    loss = 0.0
    for indices, values, loss_sum in gathered:
        loss += loss_sum
        for index, value in zip(indices, values, strict=True):
            ordered[index] = value
    from peftbench.class_metrics import classification_metrics

    metrics = classification_metrics(split.labels, ordered)
    metrics["loss"] = loss / len(split)
    return metrics, ordered
