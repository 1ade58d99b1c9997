"""Shared fixtures: tiny RoBERTa and BERT models with their own tokenizers, and tiny datasets.

Everything is built here, offline: no Hub, no downloaded weights. The dataset is a learnable
synthetic sentiment task (the label is carried by a few marker words), so a method that works
shows a falling loss within a few dozen steps even on a randomly initialised encoder.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import sys
import tempfile
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.pop("PEFTBENCH_DATA_DIR", None)
# The measured peak FLOP/s cache: per test session, never the user's.
os.environ["PEFTBENCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="peftbench-cache-")

REPO = Path(__file__).resolve().parent.parent
FILLER = (
    "the a film movie story actor scene plot music camera time people end start one two "
    "watch seen part role script director character night day world life"
).split()
POSITIVE = "great wonderful excellent superb brilliant loved".split()
NEGATIVE = "awful terrible boring dreadful poor hated".split()


def synthetic_reviews(count: int, seed: int) -> tuple[list[str], list[int]]:
    """Balanced reviews whose label is given by marker words among filler words."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(count):
        label = i % 2
        markers = POSITIVE if label else NEGATIVE
        words = [rng.choice(FILLER) for _ in range(rng.randint(8, 30))]
        for _ in range(3):
            words.insert(rng.randrange(len(words) + 1), rng.choice(markers))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def _corpus() -> list[str]:
    texts, _ = synthetic_reviews(400, seed=123)
    return texts


def _save_roberta(directory: Path) -> None:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizerFast

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(
        _corpus(), vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    )
    directory.mkdir(parents=True, exist_ok=True)
    # transformers 5 ignores vocab_file/merges_file in the constructor: load from a directory.
    tokenizer.save_model(str(directory))
    fast = RobertaTokenizerFast.from_pretrained(str(directory), model_max_length=128)
    fast.save_pretrained(directory)
    config = RobertaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=130,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=2,
    )
    torch.manual_seed(0)
    RobertaForSequenceClassification(config).save_pretrained(directory)


def _save_bert(directory: Path) -> None:
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator(_corpus(), vocab_size=300)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_model(str(directory))
    fast = BertTokenizerFast.from_pretrained(str(directory), model_max_length=128)
    fast.save_pretrained(directory)
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
        num_labels=2,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(directory)


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models") / "tiny-roberta"
    _save_roberta(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models") / "tiny-bert"
    _save_bert(directory)
    return directory


def write_dataset(directory: Path, train: int = 160, test: int = 64, fmt: str = "parquet") -> Path:
    """A train/test pair of files in the Hub's IMDb schema (text, label)."""
    import pandas as pd

    directory.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", train, 1), ("test", test, 2)):
        texts, labels = synthetic_reviews(count, seed)
        frame = pd.DataFrame({"text": texts, "label": labels})
        if fmt == "parquet":
            frame.to_parquet(directory / f"{split}-00000-of-00001.parquet")
        elif fmt == "csv":
            frame.to_csv(directory / f"{split}.csv", index=False)
        else:
            frame.to_json(directory / f"{split}.jsonl", orient="records", lines=True)
    return directory


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "reviews")


def tiny_config(model_dir: Path, data_dir: Path, output_dir: Path, **extra: object) -> dict:
    """A raw experiment config for the tiny model and data (override fields through extra)."""
    config = {
        "name": "tiny",
        "model": {"name": str(model_dir)},
        "data": {"dataset": str(data_dir), "train_size": 128, "test_size": 64},
        "training": {
            "epochs": 2,
            "train_batch_size": 16,
            "eval_batch_size": 32,
            "max_length": 64,
            "num_threads": 1,
        },
        "seeds": [0],
        "methods": {
            "full": {"learning_rate": 1e-3},
            "lora": {"learning_rate": 5e-3},
            "qlora": {"learning_rate": 5e-3},
            "ia3": {"learning_rate": 2e-2},
        },
        "output_dir": str(output_dir),
    }
    for key, value in extra.items():
        config[key] = value
    return config


def write_config(raw: dict, path: Path) -> Path:
    """The raw config as the YAML file `peftbench run` reads, keys in the order written."""
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def no_dropout(model) -> None:
    """Every dropout of the model off: its training is then deterministic given its data."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def loop_state(model, data, training, method, params, optimizer=None, scheduler=None, seed=0):
    """A RunState on CPU in fp32 around a model that the test built, for peftbench.loop.

    The optimiser defaults to AdamW over the method's groups, the schedule to a constant rate."""
    import torch

    from peftbench.config import ModelConfig
    from peftbench.loop import RunState
    from peftbench.run_spec import RunSpec

    if optimizer is None:
        optimizer = torch.optim.AdamW(method.optimizer_groups(model, params))
    if scheduler is None:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    spec = RunSpec(
        run_id=f"{method.name}-seed{seed}",
        label=method.name,
        method=method.name,
        params=params,
        seed=seed,
        experiment="test",
        config_hash="test",
        model=ModelConfig(name="test"),
        training=training,
        data_cache="",
        run_dir="",
    )
    return RunState(
        spec=spec,
        device=torch.device("cpu"),
        precision="fp32",
        data=data,
        method=method,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler("cpu", enabled=False),
    )


@pytest.fixture
def ctrl_c_as_in_a_terminal() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, as in a terminal (a test worker may ignore it)."""
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, saved)


def drop_a_ctrl_c() -> list[BaseException]:
    """Press Ctrl-C while Python runs a weakref finalizer, as the tensor memory tracker's are
    for every freed tensor: Python prints and drops the KeyboardInterrupt. Returns the
    exceptions dropped (caught here instead of printed)."""
    dropped: list[BaseException] = []

    class Freed:
        pass

    def finalizer() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10_000):  # the handler runs at a loop's back edge, inside the finalizer
            pass

    saved_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: dropped.append(unraisable.exc_value)
    try:
        freed = Freed()
        weakref.finalize(freed, finalizer)
        del freed
    finally:
        sys.unraisablehook = saved_hook
    return dropped


@contextmanager
def embedded_ray(prefix: str, **resources: int) -> Iterator[None]:
    """A small embedded Ray for a test (2 CPUs unless said, a 120 MiB object store, no
    dashboard, quiet), in its own temp dir, shut down and removed afterwards."""
    import ray

    temp_dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    ray.init(
        **{"num_cpus": 2, **resources},
        object_store_memory=120 * 2**20,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        _temp_dir=temp_dir,
    )
    try:
        yield
    finally:
        try:
            ray.shutdown()
            lost = lost_ray_workers(Path(temp_dir))
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)
        for loss in lost:  # shown in the run's warnings summary, pass or fail
            warnings.warn(loss, stacklevel=1)


# Ray worker processes a test killed on purpose (not losses to report, see lost_ray_workers).
KILLED_RAY_WORKERS: set[int] = set()


def lost_ray_workers(temp_dir: Path) -> list[str]:
    """Ray's workers in this Ray that exited unexpectedly (as its GCS log reports them; not an
    intended exit) and that no test killed: each with Ray's exit detail and the end of its
    stderr, where a crash leaves its cause. Ray sometimes loses a worker on its own under load;
    this says why when it does. Never raises: it only reads logs."""
    logs = temp_dir / "session_latest" / "logs"
    try:
        gcs = (logs / "gcs_server.out").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    lost = []
    exits = re.findall(
        r"Reporting worker exit, worker id = (\w+),.*?exit_type = (\w+), exit_detail = ?(.*)", gcs
    )
    for worker_id, exit_type, detail in exits:
        if exit_type.startswith("INTENDED"):
            continue
        errs = sorted(logs.glob(f"worker-{worker_id}-*.err"))
        pids = [err.stem.rsplit("-", 1)[-1] for err in errs]
        if any(pid.isdigit() and int(pid) in KILLED_RAY_WORKERS for pid in pids):
            continue
        try:
            tail = errs[0].read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
        except (IndexError, OSError):
            tail = ["(no stderr file)"]
        lost.append(
            f"Ray lost worker {worker_id[:12]} (pid {', '.join(pids) or '?'}; {exit_type}: "
            f"{detail.strip() or 'no detail'}); the end of its stderr:\n" + "\n".join(tail)
        )
    return lost


def assert_valid_record(path: Path) -> None:
    """Fail unless the record at `path` validates against the shipped record schema."""
    import json

    import jsonschema

    from peftbench.schema import shipped_schema

    jsonschema.validate(json.loads(path.read_text(encoding="utf-8")), shipped_schema())


@pytest.fixture(autouse=True)
def default_log_level(monkeypatch: pytest.MonkeyPatch):
    """Each test starts at the default log level: `peftbench -q` (or -v) stores its level in
    PEFTBENCH_LOG_LEVEL for the run processes, which would otherwise leak into later tests."""
    from peftbench.logs import LEVEL_ENV

    monkeypatch.delenv(LEVEL_ENV, raising=False)
    yield


@pytest.fixture(autouse=True)
def every_record_validates(tmp_path: Path, request: pytest.FixtureRequest):
    """After each test, every current-version record it wrote under tmp_path must validate
    against the published schema (files a test corrupts or dates on purpose are skipped, and so
    are tests marked `writes_invalid_records`, which build malformed records on purpose)."""
    import json

    from peftbench.results import SCHEMA_VERSION

    yield
    if request.node.get_closest_marker("writes_invalid_records"):
        return
    for path in tmp_path.rglob("record.json"):
        try:
            version = json.loads(path.read_text(encoding="utf-8")).get("schema_version")
        except (ValueError, AttributeError):
            continue
        if version == SCHEMA_VERSION:
            assert_valid_record(path)
