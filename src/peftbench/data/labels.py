"""Labels of any kind -> class ids 0..K-1, with the mapping kept so results show the originals.

Integers with any values (1..4 -> 0..3), whole-number floats (as a CSV column with a blank cell
becomes), numeric strings (as CSV files hold them), other strings, booleans; the Hub's
ClassLabel names where the source declares them; or an explicit order from data.label_names.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from peftbench.config import DataConfig
from peftbench.errors import PeftbenchError


def is_missing(value: Any) -> bool:
    """No label: None, NaN or a blank string."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _whole(value: float) -> bool:
    return math.isfinite(value) and float(value).is_integer()


def normalise(value: Any, where: str, column: str) -> Any:
    """One stored label as a plain Python bool, int or str (whole floats become ints)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if _whole(float(value)):
            return int(value)
        raise PeftbenchError(
            f"{where}: label {value!r} in column {column!r} is not a class (a fractional "
            "number); peftbench classifies, it does not regress. Fix: data.label_column must "
            "name a column of classes"
        )
    if isinstance(value, str):
        return value.strip()
    raise PeftbenchError(
        f"{where}: label {value!r} in column {column!r} is a {type(value).__name__}; labels must "
        "be integers, strings or booleans. Fix: data.label_column"
    )


def _as_number(text: str) -> int | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if _whole(number) else None


def unify(values: list[Any]) -> list[Any]:
    """Normalised labels of all splits, with numeric strings ("1", "2.0") as ints when every
    label is numeric, so that CSV labels sort as numbers (2 before 10)."""
    if values and all(isinstance(v, int | str) and not isinstance(v, bool) for v in values):
        numbers_ = [v if isinstance(v, int) else _as_number(v) for v in values]
        if all(n is not None for n in numbers_):
            return numbers_
    return values


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def check_fractional(splits: dict[str, Any], column: str) -> None:
    """A numeric label column (as CSV text or numbers) holding a fraction is not a class column."""
    numbers_ = [(name, i, _float(v)) for name, s in splits.items() for i, v in enumerate(s.labels)]
    if not numbers_ or any(n is None for _, _, n in numbers_):
        return  # not a numeric column: string classes such as "1.5" stay names
    for name, index, number in numbers_:
        if not _whole(number):
            where = f"{name} split, {splits[name].locate(index)}"
            raise PeftbenchError(
                f"{where}: label {splits[name].labels[index]} in column {column!r} is not a "
                "class (a fractional number); peftbench classifies, it does not regress. Fix: "
                "data.label_column must name a column of classes"
            )


def label_name(value: Any) -> str:
    return str(value)


def vocabulary(
    values: list[Any], declared: list[str] | None, data: DataConfig
) -> tuple[list[str], dict[Any, int], str]:
    """Class names (by id), the map from label value to id, and how the order was chosen.

    `values` are every split's unified labels. `declared` are the names the source declares
    (the Hub's ClassLabel), which integer labels index.
    """
    seen = sorted(set(values), key=lambda v: (type(v).__name__, v))
    if data.label_names:
        names = [str(n) for n in data.label_names]
        if any(label_name(v) not in names for v in seen) and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(names) for v in seen
        ):  # integer ids 0..K-1 with their class names
            return names, {i: i for i in range(len(names))}, "data.label_names (names of ids)"
        unknown = [v for v in seen if label_name(v) not in names]
        if unknown:
            raise PeftbenchError(
                f"column {data.label_column!r} holds label(s) "
                f"{', '.join(map(repr, unknown[:10]))} that data.label_names "
                f"({', '.join(names)}) does not list; fix: add them to data.label_names"
            )
        return names, {v: names.index(label_name(v)) for v in seen}, "data.label_names"
    if declared and all(isinstance(v, int) and 0 <= v < len(declared) for v in seen):
        return list(declared), {i: i for i in range(len(declared))}, "declared by the source"
    if declared and all(isinstance(v, str) and v in declared for v in seen):
        mapping = {name: i for i, name in enumerate(declared)}
        return list(declared), mapping, "declared by the source"
    names = [label_name(v) for v in seen]
    return names, {v: i for i, v in enumerate(seen)}, "sorted label values"


def original_label_values(
    label_names: list[str], gold: list[int], predicted: list[int]
) -> dict[str, list[str]]:
    """The predictions file's label fields: class names, and gold and predicted values as the
    data holds them (not ids)."""
    return {
        "label_names": list(label_names),
        "gold_values": [label_names[i] for i in gold],
        "predicted_values": [label_names[i] for i in predicted],
    }
