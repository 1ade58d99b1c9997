"""Which modules an adapter goes on, and which form the trained head, per architecture family.

Module names differ between architectures (BERT's `query`, DistilBERT's `q_lin`, Llama's
`q_proj`, GPT-2's fused `c_attn`), so `target_modules: null` in a method's settings means "this
family's default", resolved here from the model's `config.model_type`. The defaults are the
LoRA paper's query + value projections (the study's setting) and, for IA3, PEFT's key + value +
feed-forward output (Liu et al. 2022). `target_modules: all-linear` means every linear layer
outside the head. An unknown architecture gets an error listing its linear modules.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from peftbench.errors import PeftbenchError

if TYPE_CHECKING:  # torch loads when a method is applied
    from torch import nn

ALL_LINEAR = "all-linear"
# What a method's `target_modules` setting takes, for its help (one text for every method).
TARGETS_HELP = (
    "null = the architecture's query and value projections (methods/targets.py); a list of "
    "module names; or all-linear (every linear layer outside the head)."
)


@dataclass(frozen=True)
class Family:
    """One architecture family's module names (suffixes, as PEFT matches them)."""

    attention: tuple[str, ...]  # LoRA-family targets: the query and value projections
    ia3: tuple[str, ...]  # IA3 targets: key, value and the feed-forward output
    feedforward: tuple[str, ...]  # the IA3 targets that scale their input (feed-forward)
    head: tuple[str, ...]  # trained in full next to the adapter (those the model has)


_BERT = Family(("query", "value"), ("key", "value", "output.dense"), ("output.dense",), ())
_DECODER = Family(
    ("q_proj", "v_proj"), ("k_proj", "v_proj", "down_proj"), ("down_proj",), ("score",)
)
FAMILIES: dict[str, Family] = {
    # BERT-family models put a dense + tanh pooler in front of the classifier: trained too,
    # so that every family trains its whole head (see ../shared/docs/stack-notes.md).
    "bert": Family(_BERT.attention, _BERT.ia3, _BERT.feedforward, ("classifier", "pooler")),
    "roberta": Family(_BERT.attention, _BERT.ia3, _BERT.feedforward, ("classifier",)),
    "xlm-roberta": Family(_BERT.attention, _BERT.ia3, _BERT.feedforward, ("classifier",)),
    "electra": Family(_BERT.attention, _BERT.ia3, _BERT.feedforward, ("classifier",)),
    "albert": Family(
        ("query", "value"),
        ("key", "value", "ffn_output"),
        ("ffn_output",),
        ("classifier", "pooler"),
    ),
    "distilbert": Family(
        ("q_lin", "v_lin"), ("k_lin", "v_lin", "lin2"), ("lin2",), ("pre_classifier", "classifier")
    ),
    # DeBERTa-v3 checkpoints are of model_type deberta-v2.
    "deberta-v2": Family(
        ("query_proj", "value_proj"),
        ("key_proj", "value_proj", "output.dense"),
        ("output.dense",),
        ("classifier", "pooler"),
    ),
    # ModernBERT fuses query, key and value into Wqkv; its MLP output is mlp.Wo (attn.Wo is the
    # attention output).
    "modernbert": Family(("Wqkv",), ("Wqkv", "mlp.Wo"), ("mlp.Wo",), ("classifier", "head")),
    # GPT-2 fuses query, key and value into c_attn (a Conv1D, which PEFT handles).
    "gpt2": Family(("c_attn",), ("c_attn", "mlp.c_proj"), ("mlp.c_proj",), ("score",)),
    "llama": _DECODER,
    "mistral": _DECODER,
    "qwen2": _DECODER,
    "gemma": _DECODER,
}
# Heads tried for an architecture not in FAMILIES: the names Transformers' classifiers use.
FALLBACK_HEAD = ("classifier", "score", "pooler")


def model_type(model: nn.Module) -> str:
    return getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__


def family_of(model: nn.Module) -> Family | None:
    return FAMILIES.get(model_type(model))


def _matches(qualified: str, name: str) -> bool:
    return qualified == name or qualified.endswith(f".{name}")


def _is_linear(module: nn.Module) -> bool:
    from torch import nn

    return isinstance(module, nn.Linear) or type(module).__name__ in ("Conv1D", "Linear4bit")


def head_modules(model: nn.Module, requested: list[str] | None = None) -> list[str]:
    """The modules trained in full next to an adapter: `requested`, else the family's head
    (classifier / score / pooler) among the modules the model has."""
    if requested is not None:
        return list(requested)
    family = family_of(model)
    candidates = family.head if family else FALLBACK_HEAD
    names = [n for n, _ in model.named_modules()]
    present = [c for c in candidates if any(_matches(n, c) for n in names)]
    if not present:
        raise PeftbenchError(
            f"no classification head found in {type(model).__name__} (looked for "
            f"{', '.join(candidates)}); fix: set modules_to_save in the method's settings to the "
            "name of the model's head module"
        )
    return present


def linear_modules(model: nn.Module, exclude_head: bool = True) -> list[str]:
    """Qualified names of the model's linear layers, without those inside the head."""
    head = head_modules(model) if exclude_head else []
    found = []
    for qualified, module in model.named_modules():
        if not _is_linear(module):
            continue
        if any(_matches(qualified, h) or f".{h}." in f".{qualified}." for h in head):
            continue
        found.append(qualified)
    return found


def _leaf_summary(names: list[str]) -> str:
    counts = Counter(name.rsplit(".", 1)[-1] for name in names)
    return ", ".join(f"{leaf} x{count}" if count > 1 else leaf for leaf, count in counts.items())


def _unknown(model: nn.Module, what: str) -> PeftbenchError:
    return PeftbenchError(
        f"peftbench has no default {what} for architecture {model_type(model)!r}; its linear "
        f"modules are: {_leaf_summary(linear_modules(model, exclude_head=False))}. Fix: set "
        "target_modules in the method's settings (e.g. methods: {lora: {target_modules: "
        "[<query>, <value>]}}), or target_modules: all-linear"
    )


def resolve_targets(model: nn.Module, requested: list[str] | str | None) -> list[str]:
    """The LoRA-family target modules: `requested`, the family's query + value projections
    (None), or every linear layer outside the head ("all-linear")."""
    if requested == ALL_LINEAR:
        return linear_modules(model)
    if isinstance(requested, str):
        raise PeftbenchError(
            f"target_modules: {requested!r} is neither a list of module names nor "
            f"{ALL_LINEAR!r}; fix: e.g. target_modules: [query, value]"
        )
    if requested is not None:
        return list(requested)
    family = family_of(model)
    if family is None:
        raise _unknown(model, "target modules")
    return list(family.attention)


def resolve_ia3_targets(
    model: nn.Module, requested: list[str] | str | None, feedforward: list[str] | None
) -> tuple[list[str], list[str]]:
    """IA3's (target modules, feed-forward modules): as given, the family's defaults (None),
    or every linear layer with the family's feed-forward outputs ("all-linear")."""
    family = family_of(model)
    if requested is not None and requested != ALL_LINEAR:
        return resolve_targets(model, requested), list(feedforward or [])
    if family is None:
        raise _unknown(model, "IA3 target modules")
    ffn = list(feedforward) if feedforward is not None else list(family.feedforward)
    if requested == ALL_LINEAR:
        targets = linear_modules(model)
        ffn = [t for t in targets if any(_matches(t, f) for f in ffn)]
        return targets, ffn
    return list(family.ia3), ffn


def describe_targets(model: nn.Module, targets: list[str]) -> str:
    """'query x6, value x6': the modules that `targets` select in `model`, by leaf name."""
    selected = [
        q
        for q, m in model.named_modules()
        if _is_linear(m) and any(_matches(q, t) for t in targets)
    ]
    return _leaf_summary(selected) if selected else "none"


def every_head_name() -> list[str]:
    """Every head module name of every family: kept out of 4-bit quantisation, before the
    model exists to say which it has."""
    return sorted({h for family in FAMILIES.values() for h in family.head} | set(FALLBACK_HEAD))


def describe_adapted(model: nn.Module) -> str:
    """What a method put its adapters on and what it trains in full, by leaf module name:
    'adapters on query x6, value x6 (12 modules); trained in full: classifier, pooler'."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils import ModulesToSaveWrapper

    adapted, saved = [], []
    for name, module in model.named_modules():
        if isinstance(module, ModulesToSaveWrapper):
            saved.append(name.rsplit(".", 1)[-1])
        elif isinstance(module, BaseTunerLayer) and "modules_to_save" not in name:
            adapted.append(name)
    parts = []
    if adapted:
        parts.append(f"adapters on {_leaf_summary(adapted)} ({len(adapted)} modules)")
    if saved:
        parts.append(f"trained in full: {', '.join(dict.fromkeys(saved))}")
    return "; ".join(parts)  # empty for methods without PEFT modules (full, bitfit...)
