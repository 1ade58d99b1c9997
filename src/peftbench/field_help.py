"""Help text for each field of a dataclass or TypedDict, from where the field is declared.

A method's settings carry their help beside them, `name: T = setting(default, help="...")`
(peftbench.structured): what the setting means and why its default was chosen. Elsewhere (the
config sections, the record's TypedDicts shown by the schema) the help is read from the comments
next to the field: the comment block just above it, a comment at the end of its line, and the
indented "#   ..." lines right below it. Either way there is no second copy that could drift.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from typing import Any

from peftbench.structured import HELP

_FIELD = re.compile(r"^\s+(\w+)\s*:\s*[^#]*?(?:#\s?(.*))?$")
_COMMENT = re.compile(r"^\s*#\s?(.*)$")


def field_help(cls: type) -> dict[str, str]:
    """{field name: help text} for the fields declared in `cls` and its bases ('' if none):
    a dataclass field's `setting(..., help=...)` where it has one, else its source comments."""
    helps = _comment_help(cls)
    if dataclasses.is_dataclass(cls):
        for field in dataclasses.fields(cls):
            if HELP in field.metadata:
                helps[field.name] = field.metadata[HELP]
    return helps


def _comment_help(cls: type) -> dict[str, str]:
    helps: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or klass.__module__ in ("builtins", "typing"):
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        helps.update(_parse(lines, set(getattr(klass, "__annotations__", {}))))
    return helps


def _parse(lines: list[str], names: set[str]) -> dict[str, str]:
    helps: dict[str, str] = {}
    above: list[str] = []
    current: str | None = None
    for line in lines[1:]:
        comment = _COMMENT.match(line)
        if comment:
            text = comment.group(1).strip()
            if current is not None and line.lstrip().startswith("#   "):
                helps[current] = f"{helps[current]} {text}".strip()
            else:
                current = None
                above.append(text)
            continue
        match = _FIELD.match(line)
        if match and match.group(1) in names:
            current = match.group(1)
            parts = [*above, (match.group(2) or "").strip()]
            helps[current] = " ".join(p for p in parts if p)
        else:
            current = None
        above = []
    return helps


def describe_methods() -> list[dict[str, Any]]:
    """Every registered method with its settings: name, default, type and help text."""
    from peftbench.config import to_plain
    from peftbench.methods import get_method, method_names

    described = []
    for name in method_names():
        method = get_method(name)
        helps = field_help(method.params_class)
        hints = typing.get_type_hints(method.params_class)
        settings = []
        for field in dataclasses.fields(method.params_class):
            default = (
                field.default_factory()
                if field.default_factory is not dataclasses.MISSING
                else field.default
            )
            settings.append(
                {
                    "name": field.name,
                    "default": to_plain(default),
                    "type": _type_text(hints[field.name]),
                    "help": helps.get(field.name, ""),
                }
            )
        described.append(
            {
                "name": name,
                "description": method.description,
                "quantized_base": method.quantized_base,
                "settings": settings,
            }
        )
    return described


def _type_text(tp: Any) -> str:
    text = str(tp) if typing.get_origin(tp) else getattr(tp, "__name__", str(tp))
    return text.replace("typing.", "")
