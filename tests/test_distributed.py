"""Data-parallel training (peftbench.distributed) in real gloo process groups, without Ray:
several workers train exactly as one worker does, however a step's examples split."""

from __future__ import annotations

import dataclasses
import multiprocessing
import socket
import traceback
from pathlib import Path

import pytest
import torch
from conftest import loop_state, no_dropout

from peftbench import distributed
from peftbench.config import DataConfig, ModelConfig, TrainingConfig
from peftbench.data import load_prepared, prepare_data
from peftbench.loop import train_epoch
from peftbench.methods import MethodContext, get_method
from peftbench.models import load_model, load_tokenizer
from peftbench.train import set_seed

CPU = torch.device("cpu")
# 61 examples in steps of 16 with 4 micro-batches: the last step has 13 examples, split 4, 4,
# 4 and 1, so with two workers one of them has no example of the last micro-batch.
TRAIN_EXAMPLES = 61
TRAINING = TrainingConfig(train_batch_size=16, max_length=64, gradient_accumulation_steps=4)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_one_epoch(
    model_dir: str,
    cache: str,
    out: str,
    method_name: str,
    rank: int = 0,
    world: int = 1,
    port: int = 0,
) -> None:
    """One epoch of `method_name` (dropout off) on the first TRAIN_EXAMPLES examples, as worker
    `rank` of `world`; rank 0 saves the trained parameters and the epoch's loss to `out`."""
    try:
        _train_one_epoch(model_dir, cache, out, method_name, rank, world, port)
    except BaseException:
        Path(f"{out}.rank{rank}.error").write_text(traceback.format_exc())
        raise


def _train_one_epoch(
    model_dir: str, cache: str, out: str, method_name: str, rank: int, world: int, port: int
) -> None:
    torch.set_num_threads(1)
    if world > 1:
        distributed.init("127.0.0.1", port, rank, world, use_cuda=False)
    try:
        data = load_prepared(Path(cache))
        data = dataclasses.replace(data, train=data.train.select(list(range(TRAIN_EXAMPLES))))
        method = get_method(method_name)
        params = method.params_class(learning_rate=5e-3, dropout=0.0)
        set_seed(0)
        base = load_model(ModelConfig(name=model_dir), 2, CPU)
        model = method.apply(base, params, MethodContext(total_steps=4))
        no_dropout(model)
        state = loop_state(model, data, TRAINING, method, params)
        state.forward_model = distributed.wrap(model)
        loss = train_epoch(state, 1)
        if rank == 0:
            trained = {
                n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
            }
            totals = state.progress.totals
            torch.save({"loss": loss, "parameters": trained, "totals": totals}, out)
    finally:
        distributed.close()


@pytest.fixture(scope="module")
def cache(tiny_roberta: Path, tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = DataConfig(dataset=str(tiny_dataset), train_size=64, test_size=32)
    tokenizer = load_tokenizer(ModelConfig(name=str(tiny_roberta)))
    return prepare_data(data, tokenizer, "tiny", 64, tmp_path_factory.mktemp("cache"))[1]


def _two_workers(tiny_roberta: Path, cache: Path, out: Path, method_name: str) -> None:
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    workers = [
        context.Process(
            target=train_one_epoch,
            args=(str(tiny_roberta), str(cache), str(out), method_name, rank, 2, port),
        )
        for rank in (0, 1)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    for worker in workers:  # one that failed leaves the other waiting in a collective
        if worker.is_alive():
            worker.kill()
    errors = [f.read_text() for f in sorted(out.parent.glob(f"{out.name}.rank*.error"))]
    assert [worker.exitcode for worker in workers] == [0, 0], "\n".join(errors)


@pytest.mark.parametrize("method_name", ["lora", "adalora"])
def test_two_workers_with_accumulation_train_the_same_weights_as_one(
    tiny_roberta: Path, cache: Path, tmp_path: Path, method_name: str
) -> None:
    # AdaLoRA: its rank update after each step reads the model under the DDP wrapper.
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    train_one_epoch(str(tiny_roberta), str(cache), str(one), method_name)
    _two_workers(tiny_roberta, cache, two, method_name)
    single, parallel = torch.load(one), torch.load(two)
    # The step losses are the whole step's on every worker (their mean is the epoch's loss).
    assert parallel["loss"] == pytest.approx(single["loss"], rel=1e-5)
    assert parallel["totals"]["train_steps"] == single["totals"]["train_steps"] == 4
    assert parallel["parameters"].keys() == single["parameters"].keys()
    for name, value in single["parameters"].items():
        torch.testing.assert_close(parallel["parameters"][name], value, rtol=1e-4, atol=1e-5)
