"""Dataclasses from plain data (YAML, JSON) checked field by field, and back.

`from_dict` builds a dataclass from a mapping, rejecting unknown fields (with a suggestion) and
values of the wrong type, then runs the dataclass's own `validate()`; `to_plain` turns nested
dataclasses back into JSON-able dicts; `stable_hash` fingerprints such a value. The experiment
config (peftbench.config) and every method's params are read this way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from typing import Any, Literal

from peftbench.errors import PeftbenchError
from peftbench.names import suggestion


class ConfigError(PeftbenchError):
    """A config file or override that does not validate."""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false"}.get(
        tp, "null" if tp is type(None) else getattr(tp, "__name__", str(tp))
    )


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against type `tp`, converting where YAML is loose (1e-3 is a string)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin is list:
        if isinstance(value, list | tuple):
            (item_type,) = typing.get_args(tp)
            return [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
    elif tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    elif tp is Any:
        return value
    raise ConfigError(f"{where}: got {value!r}, expected {_type_name(tp)}")


def from_dict(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from `data`, rejecting unknown fields and values of the wrong type."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of fields, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        advice = [hint for u in unknown if (hint := suggestion(u, list(fields)))]
        raise ConfigError(
            f"{where}: unknown field {', '.join(repr(u) for u in unknown)}; "
            + "".join(f"{hint}; " for hint in advice)
            + f"accepted fields: {', '.join(fields)}"
        )
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = _coerce(data[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name}: required field is missing")
    instance = cls(**values)
    check = getattr(instance, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    return instance


def to_plain(value: Any) -> Any:
    """Dataclasses (nested) to plain JSON-able dicts and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def stable_hash(value: Any) -> str:
    """sha256 of a JSON-able value with sorted keys: equal configs give equal hashes."""
    text = json.dumps(to_plain(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


HELP = "help"  # the dataclass field metadata key that `setting` fills


def setting(default: Any, help: str = "") -> Any:  # noqa: A002 - the word users read
    """A dataclass field with its default and its help beside it: what the setting means and
    why the default was chosen (shown by `peftbench methods --help-text` and `--json`).
    A list or dict default is copied for each instance."""
    if isinstance(default, list | dict):
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata={HELP: help}
        )
    return dataclasses.field(default=default, metadata={HELP: help})
