"""The published JSON Schema of run records, generated from the TypedDicts in results.py.

The TypedDicts are the one source: this module turns them (types, required keys, and the
comments next to each field as descriptions) into a JSON Schema, shipped with the package as
record.schema.json and printed by `peftbench schema`. After changing a record type, bump
results.SCHEMA_VERSION and regenerate the file:

    python -m peftbench.schema          # rewrites src/peftbench/record.schema.json

tests/test_schema.py fails while the shipped file differs from what the types generate.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from peftbench.field_help import field_help

SCHEMA_FILE = "record.schema.json"
_SCALARS = {
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
}


def type_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of one Python type annotation; TypedDicts go into `defs`."""
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    if tp is Any:
        return {}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [type_schema(arg, defs) for arg in args]}
    if origin is list:
        return {"type": "array", "items": type_schema(args[0], defs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": type_schema(args[1], defs)}
    if typing.is_typeddict(tp):
        if tp.__name__ not in defs:
            defs[tp.__name__] = {}  # placeholder: a type may refer to itself
            defs[tp.__name__] = typed_dict_schema(tp, defs)
        return {"$ref": f"#/$defs/{tp.__name__}"}
    raise TypeError(f"no JSON Schema for the annotation {tp!r}")


def typed_dict_schema(
    cls: type, defs: dict[str, Any], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    helps = field_help(cls)
    properties = {}
    for name, tp in typing.get_type_hints(cls).items():
        schema = type_schema(tp, defs)
        if helps.get(name):
            schema["description"] = helps[name]
        properties[name] = schema
    schema: dict[str, Any] = {"type": "object"}
    if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):
        schema["description"] = " ".join(cls.__doc__.split())
    schema.update(
        {
            "properties": properties,
            "required": sorted(set(getattr(cls, "__required_keys__", properties)) - optional),
            # Readers ignore keys they do not know; a record may carry more than is listed.
            "additionalProperties": True,
        }
    )
    return schema


def record_schema() -> dict[str, Any]:
    """The schema of record.json, as the record types in results.py define it today."""
    from peftbench.results import OPTIONAL_KEYS, SCHEMA_VERSION, RunRecord

    defs: dict[str, Any] = {}
    body = typed_dict_schema(RunRecord, defs, OPTIONAL_KEYS)
    body["properties"]["schema_version"]["const"] = SCHEMA_VERSION
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://peftbench.invalid/record.schema.v{SCHEMA_VERSION}.json",
        "title": f"peftbench run record (runs/<run_id>/record.json), schema version "
        f"{SCHEMA_VERSION}",
        **body,
        "$defs": defs,
    }


def shipped_schema() -> dict[str, Any]:
    """The schema file that ships with this peftbench."""
    return json.loads(resources.files("peftbench").joinpath(SCHEMA_FILE).read_text("utf-8"))


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


def main() -> None:
    target = Path(__file__).with_name(SCHEMA_FILE)
    target.write_text(render(record_schema()), encoding="utf-8")
    print(f"wrote {target.name}", file=sys.stderr)


if __name__ == "__main__":
    main()
