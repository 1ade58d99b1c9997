"""The published record schema: generated from the record types, shipped, printed, enforced;
records of every older schema version still read."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from conftest import REPO

from peftbench.results import SCHEMA_VERSION, RecordError, finite_number, read_record
from peftbench.schema import record_schema, render, shipped_schema

OLD_RECORDS = sorted((Path(__file__).parent / "data" / "records").glob("v*.json"))


def test_the_shipped_schema_is_the_one_the_record_types_generate() -> None:
    shipped = (REPO / "src" / "peftbench" / "record.schema.json").read_text(encoding="utf-8")
    assert shipped == render(record_schema()), (
        "record types changed: bump results.SCHEMA_VERSION (with an upgrade in "
        "results.UPGRADES) and run `python -m peftbench.schema`"
    )
    jsonschema.Draft202012Validator.check_schema(shipped_schema())


def test_peftbench_schema_prints_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "peftbench", "schema"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": ""},
        check=True,
    )
    assert json.loads(result.stdout) == shipped_schema()


def test_the_schema_describes_each_field_from_its_comment() -> None:
    schema = shipped_schema()
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    assert "sha256" in schema["properties"]["config_hash"]["description"]
    assert schema["properties"]["status"]["enum"] == ["success", "failed", "canceled"]
    assert "RunError" in schema["$defs"]


@pytest.mark.parametrize("path", OLD_RECORDS, ids=lambda p: p.name)
def test_records_of_older_versions_still_read(path: Path) -> None:
    record = read_record(path)  # brought up to the current version
    assert record["schema_version"] == SCHEMA_VERSION
    jsonschema.validate(record, shipped_schema())


def test_the_schema_rejects_what_readers_could_not_use() -> None:
    good = json.loads(OLD_RECORDS[0].read_text())
    good["schema_version"] = SCHEMA_VERSION
    jsonschema.validate(good, shipped_schema())
    for change in (
        lambda r: r.pop("metrics"),
        lambda r: r.update(status="done"),
        lambda r: r.update(error={"type": "X"}),
        lambda r: r.update(run_id=7),
    ):
        bad = copy.deepcopy(good)
        change(bad)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, shipped_schema())


def test_a_record_from_a_newer_peftbench_is_refused_by_name(tmp_path: Path) -> None:
    record = json.loads(OLD_RECORDS[0].read_text())
    record["schema_version"] = SCHEMA_VERSION + 1
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record))
    with pytest.raises(RecordError, match=f"schema version {SCHEMA_VERSION + 1}, this peftbench"):
        read_record(path)


@pytest.mark.parametrize(
    ("value", "read"),
    [
        (3, 3),
        (0.25, 0.25),
        (-1e-9, -1e-9),
        (True, None),
        (False, None),
        ("0.9", None),
        (None, None),
        (float("nan"), None),
        (float("inf"), None),
        (-float("inf"), None),
        ([1], None),
    ],
)
def test_a_figure_read_from_a_record_is_a_finite_int_or_float(value: object, read: object) -> None:
    # JSON gives true/false, strings and (from Python writers) NaN and Infinity where a number
    # was expected; every reader of records takes figures through finite_number.
    assert finite_number(value) == read
