"""Base models: by Hub id, local path or Python package; pretrained or random; full or 4-bit."""

from __future__ import annotations

import importlib
import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
)

from peftbench.config import ModelConfig
from peftbench.errors import PeftbenchError
from peftbench.methods import FourBitBase, Method

# The dtype names of configs and records, as torch dtypes.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

ARCHITECTURES_DIR = Path(__file__).parent / "architectures"
PACKAGE_PREFIX = "package:"


def resolve_name(name: str) -> str:
    """A Hub id or local path for `name`; "package:<module>" asks the module for its path."""
    if not name.startswith(PACKAGE_PREFIX):
        return name
    module_name = name[len(PACKAGE_PREFIX) :]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        pip_name = module_name.replace("_", "-")
        raise PeftbenchError(
            f"model {name!r}: Python package {module_name!r} is not installed; "
            f"fix: pip install {pip_name}"
        ) from exc
    get_path = getattr(module, "get_model_path", None)
    if get_path is None:
        raise PeftbenchError(
            f"model {name!r}: module {module_name!r} has no get_model_path(); "
            "a packaged model must expose one that returns its directory"
        )
    return str(get_path())


def _not_available(what: str, name: str, exc: Exception) -> PeftbenchError:
    return PeftbenchError(
        f"{what} {name!r} could not be loaded: it is neither a local directory nor in the "
        f"Hugging Face cache, and the Hub could not be reached ({type(exc).__name__}). "
        f"Fix: point model.name at a local copy, download it on a machine with network "
        f"(`hf download {name}`), or use model.init: random for a weight-free timing run."
    )


def shipped_architecture(name: str) -> Path | None:
    """The architecture config shipped with peftbench for a model name, if there is one."""
    path = ARCHITECTURES_DIR / f"{name}.json"
    return path if path.is_file() else None


def load_architecture(
    model: ModelConfig, num_labels: int, on_disk_only: bool = False
) -> PretrainedConfig:
    """The model's architecture config; for init: random a shipped architecture name works.
    on_disk_only: look only in a local directory or the Hugging Face cache, never the Hub."""
    shipped = shipped_architecture(model.name)
    if model.init == "random" and shipped is not None:
        config_dict = json.loads(shipped.read_text())
        config = AutoConfig.for_model(**config_dict)
    else:
        name = resolve_name(model.name)
        try:
            config = AutoConfig.from_pretrained(
                name, revision=model.revision, local_files_only=on_disk_only
            )
        except (OSError, ValueError) as exc:
            if shipped is not None:
                raise PeftbenchError(
                    f"model {model.name!r} is not available offline. Its architecture ships "
                    f"with peftbench: set model.init: random for planning or timing runs, or "
                    f"point model.name at a local copy of the weights."
                ) from exc
            raise _not_available("model", model.name, exc) from exc
    config.num_labels = num_labels
    _set_pad_token_id(config)
    return config


def _set_pad_token_id(config: PretrainedConfig) -> None:
    """Decoders used as classifiers (GPT-2, Llama, ...) pool the last non-padding token, which
    needs a padding id: their end-of-text token, as load_tokenizer pads with it."""
    if getattr(config, "pad_token_id", None) is not None:
        return
    eos = getattr(config, "eos_token_id", None)
    if isinstance(eos, list):
        eos = eos[0] if eos else None
    if eos is not None:
        config.pad_token_id = eos


def architecture_for_planning(model: ModelConfig, num_labels: int) -> tuple[PretrainedConfig, str]:
    """The architecture for sizing a run: the model's own config when it is on disk (a local
    directory or the Hugging Face cache), else the copy shipped with peftbench, else the Hub's.
    The shipped copy comes before the Hub so that planning offline does not wait out the Hub
    client's retries (about 30 s without network)."""
    shipped = shipped_architecture(model.name) is not None
    shipped_source = "architecture shipped with peftbench"
    if model.init == "random" and shipped:  # what the run itself will build
        return load_architecture(model, num_labels), shipped_source
    try:
        return load_architecture(model, num_labels, on_disk_only=True), "model config"
    except PeftbenchError:
        pass
    if shipped:
        random_model = ModelConfig(name=model.name, init="random")
        return load_architecture(random_model, num_labels), shipped_source
    return load_architecture(model, num_labels), "model config"


def load_tokenizer(model: ModelConfig) -> Any:
    """The tokenizer named by model.tokenizer (default: the model itself)."""
    name = model.tokenizer or model.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_name(name), revision=model.revision)
    except (OSError, ValueError) as exc:
        if model.init == "random" and model.tokenizer is None:
            raise PeftbenchError(
                f"model {model.name!r} with init: random has no tokenizer on disk; "
                "fix: set model.tokenizer to a local tokenizer (any with a vocabulary no larger "
                "than the model's)"
            ) from exc
        raise _not_available("tokenizer", name, exc) from exc
    if tokenizer.pad_token is None:  # decoder tokenizers (GPT-2, Llama): pad with end-of-text
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"  # collate pads on the right; last-token pooling expects it
    return tokenizer


def attention_implementation(attention: str) -> str | None:
    """What to ask Transformers for: "eager" as asked; for "sdpa" nothing, which gives SDPA
    where the architecture has it and eager code where it has none (DeBERTa-v2/v3)."""
    return "eager" if attention == "eager" else None


def build_random_model(config: PretrainedConfig, attention: str = "sdpa") -> nn.Module:
    """A sequence-classification model with fresh weights (seed the RNG first to repeat it)."""
    return AutoModelForSequenceClassification.from_config(
        config, attn_implementation=attention_implementation(attention)
    )


def check_4bit_available() -> None:
    """Fail clearly where 4-bit weights cannot be used; never fall back to full precision."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise PeftbenchError(
            "a 4-bit base needs bitsandbytes, which is not installed; fix: pip install "
            "bitsandbytes (CUDA or x86-64 CPU), or drop the methods that load 4-bit weights"
        )


def quantization_config(quantization: FourBitBase, device_type: str) -> Any:
    """Transformers' BitsAndBytesConfig for `quantization` on a `device_type` device."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quantization.quant_type,
        bnb_4bit_use_double_quant=quantization.double_quant,
        bnb_4bit_compute_dtype=DTYPES[quantization.compute_dtype_on(device_type)],
        # The head is trained in full and PEFT copies it: quantising it breaks that copy.
        # Patterns match from the start of a module's full name ("bert.pooler.dense").
        llm_int8_skip_modules=[rf"(?:.*\.)?{name}" for name in quantization.keep_full],
    )


def _disable_cpu_inference_repacking(model: nn.Module) -> None:
    # bitsandbytes on CPUs with AVX-512 BF16 repacks 4-bit weights into an inference-only
    # layout during a no-grad forward (evaluation); the next training step then crashes.
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


# Where encoder architectures keep the dropout on attention probabilities (BERT, RoBERTa,
# ELECTRA, DeBERTa, XLM-R; DistilBERT, ModernBERT).
ATTENTION_DROPOUT_FIELDS = ("attention_probs_dropout_prob", "attention_dropout")


def _attention_dropout_field(config: PretrainedConfig) -> str | None:
    return next((f for f in ATTENTION_DROPOUT_FIELDS if hasattr(config, f)), None)


def attention_dropout_of(config: PretrainedConfig) -> float | None:
    """The architecture's attention-dropout probability, or None if it has no such setting."""
    field = _attention_dropout_field(config)
    return None if field is None else float(getattr(config, field))


def set_attention_dropout(
    config: PretrainedConfig, choice: str | float, device: torch.device, attention: str
) -> None:
    """Apply training.attention_dropout (see TrainingConfig) to the architecture config."""
    if choice == "model" or (choice == "auto" and (device.type != "cpu" or attention != "sdpa")):
        return
    probability = 0.0 if choice == "auto" else float(choice)
    field = _attention_dropout_field(config)
    if field is None:
        if choice == "auto":
            return
        raise PeftbenchError(
            f"training.attention_dropout: the {config.model_type} architecture has no attention "
            f"dropout setting ({' or '.join(ATTENTION_DROPOUT_FIELDS)}); fix: set it to model"
        )
    setattr(config, field, probability)


def load_model(
    model: ModelConfig,
    num_labels: int,
    device: torch.device,
    quantization: FourBitBase | None = None,
    attention: str = "sdpa",
    attention_dropout: str | float = "model",
) -> nn.Module:
    """The base classification model on `device`; in 4-bit as `quantization` says, if given
    (see Method.quantization)."""
    config = load_architecture(model, num_labels)
    set_attention_dropout(config, attention_dropout, device, attention)
    if quantization is None:
        if model.init == "random":
            return build_random_model(config, attention).to(device)
        try:
            loaded = AutoModelForSequenceClassification.from_pretrained(
                resolve_name(model.name),
                config=config,
                revision=model.revision,
                attn_implementation=attention_implementation(attention),
                # A checkpoint with a head for another number of classes gets a fresh head.
                ignore_mismatched_sizes=True,
            )
        except OSError as exc:
            raise _not_available("model", model.name, exc) from exc
        return loaded.to(device)

    check_4bit_available()
    with tempfile.TemporaryDirectory(prefix="peftbench-random-") as scratch:
        source = resolve_name(model.name)
        if model.init == "random":
            # bitsandbytes quantises while loading weights, so random weights go via disk.
            build_random_model(config, attention).save_pretrained(scratch)
            source = scratch
        loaded = AutoModelForSequenceClassification.from_pretrained(
            source,
            config=config,
            attn_implementation=attention_implementation(attention),
            quantization_config=quantization_config(quantization, device.type),
            device_map={"": device},
            revision=None if model.init == "random" else model.revision,
            ignore_mismatched_sizes=True,
        )
    if device.type == "cpu":
        _disable_cpu_inference_repacking(loaded)
    return loaded


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit weights count as their unpacked size."""
    trainable = total = 0
    for parameter in model.parameters():
        count = parameter.numel()
        # bitsandbytes packs two 4-bit values per uint8 element.
        if parameter.__class__.__name__ == "Params4bit":
            count *= 2
        total += count
        if parameter.requires_grad:
            trainable += count
    return trainable, total


# What a method that freezes part of a plain model (BitFit, head only) saves: its trained tensors.
TRAINED_TENSORS_FILE = "trained_tensors.safetensors"


def save_trained_model(model: nn.Module, directory: Path, base_reloadable: bool) -> None:
    """Save what a run trained, in the form load_trained reads back.

    A PEFT model saves its adapter and head. A plain model whose weights are partly frozen saves
    just its trained tensors when the frozen base can be loaded again from its source
    (`base_reloadable`: a pretrained model, not random weights); otherwise, and for full
    fine-tuning, the whole model is saved.
    """
    from peft import PeftModel

    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    partly_frozen = len(trained) < len(list(model.parameters()))
    if isinstance(model, PeftModel) or not partly_frozen or not base_reloadable:
        model.save_pretrained(directory)
        return
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: p.detach().cpu().contiguous() for name, p in trained.items()}
    save_file(tensors, str(directory / TRAINED_TENSORS_FILE))


def load_trained(
    model: ModelConfig,
    num_labels: int,
    saved_dir: Path,
    device: torch.device,
    method: Method,
    params: Any,
) -> nn.Module:
    """Load what a run of `method` with `params` saved: a whole model, base + PEFT adapter, or
    base + trained tensors."""
    saved_dir = Path(saved_dir)
    if (saved_dir / TRAINED_TENSORS_FILE).exists():
        from safetensors.torch import load_file

        base = load_model(model, num_labels, device, method.quantization(params))
        tensors = load_file(str(saved_dir / TRAINED_TENSORS_FILE), device=str(device))
        unexpected = base.load_state_dict(tensors, strict=False).unexpected_keys
        if unexpected:
            raise PeftbenchError(
                f"{saved_dir} holds tensors the model {model.name} does not have "
                f"({', '.join(unexpected[:3])}); fix: load it with the model it was trained on"
            )
        return base
    if not (saved_dir / "adapter_config.json").exists():
        return AutoModelForSequenceClassification.from_pretrained(saved_dir).to(device)
    from peft import PeftModel

    base = load_model(model, num_labels, device, method.quantization(params))
    if method.prepare_base is not None:
        method.prepare_base(base)
    return PeftModel.from_pretrained(base, saved_dir)
