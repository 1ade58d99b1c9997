"""The names users bring from Hugging Face Trainer / PEFT, and what peftbench calls them.

A config field has one name here (one source of truth per setting); a familiar name from
another tool is answered with ours in the error instead of being silently accepted under two
names. Typos get the closest accepted name.
"""

from __future__ import annotations

import difflib

# Their name -> (our name, where it goes when that is not the same section).
FAMILIAR_NAMES: dict[str, tuple[str, str | None]] = {
    # PEFT's LoraConfig, IA3Config, ...
    "lora_alpha": ("alpha", None),
    "lora_dropout": ("dropout", None),
    "lora_r": ("r", None),
    "rank": ("r", None),
    # transformers.TrainingArguments
    "num_train_epochs": ("epochs", "training.epochs"),
    "num_epochs": ("epochs", "training.epochs"),
    "per_device_train_batch_size": ("train_batch_size", "training.train_batch_size"),
    "per_device_eval_batch_size": ("eval_batch_size", "training.eval_batch_size"),
    "batch_size": ("train_batch_size", "training.train_batch_size"),
    "max_seq_length": ("max_length", "training.max_length"),
    "max_seq_len": ("max_length", "training.max_length"),
    "bf16": ("precision", "training.precision: bf16"),
    "fp16": ("precision", "training.precision: fp16"),
    "lr": ("learning_rate", "methods.<label>.learning_rate"),
    "learning_rate": ("learning_rate", "methods.<label>.learning_rate (each method has its own)"),
    "seed": ("seeds", "seeds: [0, 1, 2] (top level)"),
    "model_name_or_path": ("name", "model.name"),
    "dataset_name": ("dataset", "data.dataset"),
    "report_to": ("report_to", "tracking.report_to"),
}


def suggestion(unknown: str, accepted: list[str]) -> str:
    """What to write instead of `unknown`, or '' when nothing fits."""
    if unknown in FAMILIAR_NAMES:
        ours, where = FAMILIAR_NAMES[unknown]
        takes_a_value = where is not None and ":" in where  # bf16: true -> precision: bf16
        if ours in accepted and ours != unknown and not takes_a_value:
            return f"peftbench calls {unknown!r} {ours!r}"
        if where is not None:
            return f"{unknown!r} is set as {where}"
    close = difflib.get_close_matches(unknown, accepted, n=1, cutoff=0.75)
    return f"did you mean {close[0]!r}?" if close else ""
