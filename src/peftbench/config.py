"""The experiment config: YAML in, validated dataclasses out, with "a.b=c" overrides.

Every error names the field, what was wrong and what is accepted. Method hyperparameters are
validated against the dataclass that each method module declares (peftbench.methods).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

# The generic half lives in peftbench.structured; re-exported, as callers find it here.
from peftbench.structured import ConfigError as ConfigError
from peftbench.structured import from_dict as from_dict
from peftbench.structured import stable_hash as stable_hash
from peftbench.structured import to_plain as to_plain


@dataclass
class ModelConfig:
    # A Hub id ("roberta-base"), a local directory, or "package:<module>" for a model that a
    # Python package ships and exposes through <module>.get_model_path() (offline, no Hub).
    name: str
    # "pretrained" loads the weights; "random" builds the architecture with fresh weights
    # (planning, speed and memory benchmarks where the weights cannot be had).
    init: Literal["pretrained", "random"] = "pretrained"
    # Where the tokenizer comes from; defaults to `name`.
    tokenizer: str | None = None
    revision: str | None = None


@dataclass
class DataConfig:
    # A Hub dataset id ("imdb", "stanfordnlp/imdb"), a local directory of Parquet / CSV /
    # JSONL files, a single such file, or an extracted aclImdb folder.
    dataset: str
    # An offline copy of `dataset` to read instead of the Hub. When unset, the directory
    # $PEFTBENCH_DATA_DIR/<dataset> is used if it exists.
    local_path: str | None = None
    # The Hub dataset's configuration, for datasets that have several ("mrpc" of nyu-mll/glue).
    dataset_config: str | None = None
    # The text: one column, or several joined (in order) with text_separator.
    text_column: str | list[str] = "text"
    text_separator: str = " "
    # The second text of a sentence-pair task (NLI, paraphrase, GLUE RTE/MRPC): the two are
    # tokenised as a pair (the model's separator between them; the longer one truncated first).
    text_pair_column: str | None = None
    label_column: str = "label"
    # The classes in id order, as the label values appear in the data, or the names of
    # integer labels 0..K-1; null = the source's declared class names, else the sorted label
    # values (1..4 -> ids 0..3).
    label_names: list[str] | None = None
    # Names of the columns of CSV / TSV files that have no header row, in order.
    column_names: list[str] | None = None
    # Text encoding of CSV / TSV / JSONL files ("utf-8", "latin-1", "cp1252", ...).
    encoding: str = "utf-8"
    # Rows with an empty label or text are an error; true drops them (the count is recorded).
    drop_invalid: bool = False
    train_split: str = "train"
    # null: carve a seeded, stratified test split of test_fraction from the training split.
    test_split: str | None = "test"
    test_fraction: float = 0.2
    # A split of the source used by a method's `search:` instead of carving validation_size
    # from the training subset, when the source has it; null = always carve.
    validation_split: str | None = "validation"
    # Stratified, seeded subsets; null takes the whole split.
    train_size: int | None = None
    test_size: int | None = None
    subset_seed: int = 0
    # Number of classes; null = found in the data. `plan` uses it (default 2) to size the head.
    num_labels: int | None = None
    # Drop exact duplicate texts within each split, and test texts that also appear in train
    # (IMDb has 123 such test reviews), before drawing the subsets.
    drop_duplicates: bool = False
    # Held out of the training subset to choose hyperparameters in a method's `search:`
    # (a fraction below 1, or a count); the test split is never used for choosing.
    validation_size: float = 0.2


@dataclass
class TrainingConfig:
    epochs: int = 3
    train_batch_size: int = 16
    eval_batch_size: int = 64
    max_length: int = 512
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # "auto": bf16 where the device computes it natively (CUDA with bf16, CPUs with
    # AVX-512 BF16 or AMX), fp16 on older GPUs, fp32 on other CPUs; it resolves on the machine
    # that trains, and each record keeps what it resolved to (train_info.precision).
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # "dynamic" pads each batch to its longest example; "max_length" pads every example to
    # max_length, as the reference study did. Both give the same predictions.
    padding: Literal["dynamic", "max_length"] = "dynamic"
    # Batch training examples of similar length together (seeded), to waste less on padding.
    group_by_length: bool = True
    # Evaluate in batches sorted by length (predictions are put back in order).
    sort_eval_by_length: bool = True
    # "reference" reproduces the study's pipeline to measure against: every example padded to
    # max_length, fp32, no length grouping, no sorting, no compilation, the model's attention
    # dropout. It overrides those fields.
    pipeline: Literal["default", "reference"] = "default"
    # The optimiser step still sees train_batch_size examples; each forward/backward sees
    # train_batch_size / gradient_accumulation_steps of them (less activation memory).
    gradient_accumulation_steps: int = 1
    # Recompute activations in the backward pass instead of storing them (less memory, ~30%
    # more compute).
    gradient_checkpointing: bool = False
    # torch.compile the model (dynamic shapes); the first steps are slower while it compiles.
    compile: bool = False
    # Attention kernel: PyTorch's scaled_dot_product_attention (where the architecture has it;
    # DeBERTa-v2/v3 has only eager code), or the eager reference code.
    attention: Literal["sdpa", "eager"] = "sdpa"
    # Dropout on the attention probabilities while training. PyTorch's fused CPU attention
    # kernel has no dropout: with it, SDPA falls back to unfused code that materialises and
    # masks every score, 2-3x slower per training step at 256-512 tokens (measured:
    # benchmarks/results/profile-cpu-*). "auto": none on CPU with sdpa attention, the model's
    # own value elsewhere (CUDA kernels apply it fused); "model": the model's own value
    # (0.1 for BERT and RoBERTa); a number: that probability.
    attention_dropout: Literal["auto", "model"] | float = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Threads for CPU math; null leaves PyTorch's default (one per core).
    num_threads: int | None = None
    # Keep the trained adapter / model under runs/<run_id>/model (its size is always measured).
    keep_model: bool = True


@dataclass
class RunResources:
    """What one run (each of its workers, when workers_per_run > 1) reserves on a Ray node."""

    # CPU cores; also the run's CPU thread count. null: an even share of a node's cores
    # among execution.max_concurrent runs (1 when max_concurrent is null).
    cpus: float | None = None
    # GPUs; the run sees only these. null: 1 where the cluster has GPUs, else 0.
    gpus: float | None = None


@dataclass
class ExecutionConfig:
    """Where the runs execute: here one at a time, or as Ray tasks (peftbench.execution)."""

    backend: Literal["local", "ray"] = "local"
    # Ray only. null: start an embedded Ray on this machine; "auto", "HOST:6379" or
    # "ray://HOST:10001": join a running cluster.
    address: str | None = None
    # At most this many runs at once (null: as many as the resources allow).
    max_concurrent: int | None = None
    resources_per_run: RunResources = field(default_factory=RunResources)
    # > 1: one run trains data-parallel over this many workers (DDP, gloo on CPU).
    workers_per_run: int = 1
    # A directory every node can write (a shared mount) for checkpoints and trained models,
    # when output_dir is not on shared storage. null: they go under output_dir.
    storage: str | None = None
    # Ray only. A run whose worker process or node is lost (killed, out of memory, node
    # down; not a run that ends with an error) is started again this many times, resuming
    # from its last epoch checkpoint. 0: record it as failed at once (a rerun resumes it).
    max_retries: int = 1


@dataclass
class TrackingConfig:
    # Experiment trackers that every run logs to (params, loss and learning rate per step,
    # metrics per epoch, measurements, record and predictions): any of mlflow, tensorboard,
    # wandb. None by default: the records under output_dir are the results either way.
    report_to: list[Literal["mlflow", "tensorboard", "wandb"]] = field(default_factory=list)
    # MLflow's store; null = $MLFLOW_TRACKING_URI if set, else sqlite:///<output_dir>/mlflow.db
    # (a local SQLite store: MLflow 3's plain file store is deprecated).
    mlflow_tracking_uri: str | None = None
    # The trackers' experiment (MLflow experiment, W&B project); null = the config's name.
    experiment_name: str | None = None


@dataclass
class MethodSpec:
    """One entry of `methods:`: a label, the registered method it runs, its hyperparameters."""

    label: str
    method: str
    params: Any  # the method's own params dataclass instance
    # Hyperparameter grid to search on the validation split: field -> values to try, e.g.
    # {"learning_rate": [1e-4, 3e-4, 1e-3]}. Empty: no search.
    search: dict[str, list] = field(default_factory=dict)

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the searched values (one empty dict when there is no search)."""
        combos: list[dict[str, Any]] = [{}]
        for name, values in self.search.items():
            combos = [{**combo, name: value} for combo in combos for value in values]
        return combos


@dataclass
class ExperimentConfig:
    name: str
    model: ModelConfig
    data: DataConfig
    methods: list[MethodSpec]
    training: TrainingConfig = field(default_factory=TrainingConfig)
    seeds: list[int] = field(default_factory=lambda: [0])
    output_dir: str | None = None  # default: results/<name>
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir or f"results/{self.name}")


# ---------------------------------------------------------------------------------------------
# Loading, overrides, validation of the whole experiment


def apply_override(raw: dict, override: str) -> None:
    """Apply one "a.b.c=value" override to the raw config dict; the value is parsed as YAML."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected the form key.sub=value")
    dotted, _, text = override.partition("=")
    set_dotted(raw, dotted.strip(), yaml.safe_load(text) if text.strip() else None)


def set_dotted(raw: dict, dotted: str, value: Any) -> None:
    """Set raw["a"]["b"]["c"] = value for dotted "a.b.c", making the mappings on the way."""
    keys = dotted.split(".")
    node = raw
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {key!r} is not a mapping")
        node = child
    node[keys[-1]] = value


def select_methods(raw: dict, labels: list[str]) -> None:
    """Keep only the `methods:` entries with these labels (in the config's order)."""
    entries = raw.get("methods")
    available = list(entries) if isinstance(entries, dict) else []
    unknown = [label for label in labels if label not in available]
    if unknown:
        raise ConfigError(
            f"--methods: no method labelled {', '.join(repr(u) for u in unknown)} in this "
            f"config; its labels: {', '.join(available) or 'none'}"
        )
    raw["methods"] = {label: entries[label] for label in available if label in labels}


def _check_split_names(data: DataConfig) -> None:
    """The model is never tested, nor its hyperparameters chosen, on the rows it trains on."""
    for field_name, role in (("test_split", "tested"), ("validation_split", "tuned")):
        if getattr(data, field_name) == data.train_split:
            raise ConfigError(
                f"data.{field_name}: {data.train_split!r} is also data.train_split, so the model "
                f"would be {role} on the rows it trains on; fix: name another split of the "
                f"source, or null to carve one from the training split"
            )


def _positive(value: int | None, where: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(f"{where}: must be a positive integer, got {value!r}")


def _validate_numbers(config: ExperimentConfig) -> None:
    t = config.training
    for name in ("epochs", "train_batch_size", "eval_batch_size", "max_length"):
        _positive(getattr(t, name), f"training.{name}")
    _positive(t.num_threads, "training.num_threads", allow_none=True)
    if not 0.0 <= t.warmup_ratio < 1.0:
        raise ConfigError(f"training.warmup_ratio: must be in [0, 1), got {t.warmup_ratio}")
    _positive(t.gradient_accumulation_steps, "training.gradient_accumulation_steps")
    if t.gradient_accumulation_steps > t.train_batch_size:
        raise ConfigError(
            f"training.gradient_accumulation_steps ({t.gradient_accumulation_steps}) cannot "
            f"exceed training.train_batch_size ({t.train_batch_size})"
        )
    if isinstance(t.attention_dropout, float) and not 0.0 <= t.attention_dropout < 1.0:
        raise ConfigError(
            f"training.attention_dropout: auto, model, or a probability in [0, 1), "
            f"got {t.attention_dropout}"
        )
    if t.weight_decay < 0 or t.max_grad_norm <= 0:
        raise ConfigError("training.weight_decay must be >= 0 and training.max_grad_norm > 0")
    _positive(config.data.train_size, "data.train_size", allow_none=True)
    _positive(config.data.test_size, "data.test_size", allow_none=True)
    if config.data.num_labels is not None and config.data.num_labels < 2:
        raise ConfigError(f"data.num_labels: at least 2 classes, got {config.data.num_labels}")
    size = config.data.validation_size
    if not math.isfinite(size) or size <= 0 or (size >= 1 and size != int(size)):
        raise ConfigError(
            f"data.validation_size: a fraction in (0, 1) or a whole count, got {size}"
        )
    if not 0.0 < config.data.test_fraction < 1.0:
        raise ConfigError(
            f"data.test_fraction: a fraction in (0, 1), got {config.data.test_fraction}"
        )
    if config.data.text_column == []:
        raise ConfigError("data.text_column: name at least one column")
    _check_split_names(config.data)
    for entry in config.methods:
        rates = [entry.params.learning_rate, *entry.search.get("learning_rate", [])]
        bad = [rate for rate in rates if not (rate > 0 and math.isfinite(rate))]
        if bad:
            raise ConfigError(
                f"methods.{entry.label}.learning_rate: must be a positive number, got {bad[0]:g}"
            )
    if len(set(config.tracking.report_to)) != len(config.tracking.report_to):
        raise ConfigError(f"tracking.report_to: each tracker once, got {config.tracking.report_to}")
    if not config.seeds:
        raise ConfigError("seeds: give at least one seed, for example seeds: [0]")
    if len(set(config.seeds)) != len(config.seeds):
        raise ConfigError(f"seeds: each seed once, got {config.seeds}")


def _validate_execution(execution: ExecutionConfig, training: TrainingConfig) -> None:
    _positive(execution.max_concurrent, "execution.max_concurrent", allow_none=True)
    _positive(execution.workers_per_run, "execution.workers_per_run")
    per_step = execution.workers_per_run * training.gradient_accumulation_steps
    if per_step > training.train_batch_size:
        raise ConfigError(
            f"execution.workers_per_run ({execution.workers_per_run}) x "
            f"training.gradient_accumulation_steps cannot exceed training.train_batch_size "
            f"({training.train_batch_size}): each worker needs examples in every step"
        )
    resources = execution.resources_per_run
    if resources.cpus is not None and resources.cpus <= 0:
        raise ConfigError(f"execution.resources_per_run.cpus: must be > 0, got {resources.cpus}")
    if resources.gpus is not None and resources.gpus < 0:
        raise ConfigError(f"execution.resources_per_run.gpus: must be >= 0, got {resources.gpus}")
    if execution.max_retries < 0:
        raise ConfigError(f"execution.max_retries: must be >= 0, got {execution.max_retries}")
    if execution.backend == "local":
        ray_only = {
            "address": execution.address is not None,
            "max_concurrent": (execution.max_concurrent or 1) > 1,
            "workers_per_run": execution.workers_per_run > 1,
            "storage": execution.storage is not None,
        }
        used = [name for name, set_ in ray_only.items() if set_]
        if used:
            raise ConfigError(
                f"execution.{used[0]}: needs execution.backend: ray (the local backend runs "
                "one run at a time on this machine); fix: execution.backend=ray, or --parallel N"
            )


def _parse_methods(raw_methods: Any) -> list[MethodSpec]:
    from peftbench.methods import get_method, method_names

    if not isinstance(raw_methods, dict) or not raw_methods:
        raise ConfigError(
            "methods: expected a mapping of run labels to method settings, for example "
            "methods: {lora: {learning_rate: 5.0e-4}}; registered methods: "
            + ", ".join(method_names())
        )
    specs = []
    for label, settings in raw_methods.items():
        settings = dict(settings or {})
        method_name = settings.pop("method", label)
        method = get_method(method_name, where=f"methods.{label}")
        search = settings.pop("search", None) or {}
        params = from_dict(method.params_class, settings, f"methods.{label}")
        spec = MethodSpec(label=str(label), method=method_name, params=params, search={})
        spec.search = _parse_search(search, method.params_class, settings, f"methods.{label}")
        specs.append(spec)
    return specs


def _parse_search(search: Any, params_class: type, settings: dict, where: str) -> dict:
    """Validate a search grid: every value must make valid params for the method."""
    if not isinstance(search, dict):
        raise ConfigError(
            f"{where}.search: expected a mapping of field to a list of values, for example "
            "search: {learning_rate: [1.0e-4, 3.0e-4, 1.0e-3]}"
        )
    grid = {}
    for name, values in search.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.search.{name}: expected a non-empty list of values")
        checked = [
            getattr(from_dict(params_class, {**settings, name: v}, f"{where}.search"), name)
            for v in values
        ]
        grid[name] = checked
    return grid


def parse_config(raw: dict) -> ExperimentConfig:
    """Validate a raw config dict into an ExperimentConfig."""
    if not isinstance(raw, dict):
        raise ConfigError("the config file must be a YAML mapping with model, data and methods")
    raw = dict(raw)
    methods = _parse_methods(raw.pop("methods", None))
    config = from_dict(ExperimentConfig, {**raw, "methods": []}, "config")
    config.methods = methods
    _validate_numbers(config)
    _validate_execution(config.execution, config.training)
    if config.training.pipeline == "reference":
        config.training = reference_pipeline(config.training)
    return config


def reference_pipeline(training: TrainingConfig) -> TrainingConfig:
    """The reference study's way of training: padded to max length, fp32, nothing grouped."""
    return dataclasses.replace(
        training,
        padding="max_length",
        precision="fp32",
        group_by_length=False,
        sort_eval_by_length=False,
        compile=False,
        attention_dropout="model",
    )


def load_raw(path: Path | str, overrides: list[str] = ()) -> dict:
    """Read a YAML config file and apply overrides, without validating."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    raw = raw or {}
    for override in overrides:
        apply_override(raw, override)
    return raw


def load_config(path: Path | str, overrides: list[str] = ()) -> ExperimentConfig:
    """Read, override and validate an experiment config."""
    return parse_config(load_raw(path, overrides))
