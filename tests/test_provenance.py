"""benchmarks/provenance.py: the command a benchmark result shows is the one that was run."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import REPO


@pytest.fixture(name="shown_command")
def shown_command_fixture(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    from provenance import shown_command

    return shown_command


def test_the_command_is_the_arguments_given_from_the_repository_root(shown_command) -> None:
    argv = [
        str(REPO / "benchmarks" / "parallel.py"),
        "--note",
        "nothing else ran",
        "--commit-only",
        str(REPO / "configs" / "imdb-minilm-study-size.yaml"),
        "training.precision=fp32",
    ]
    assert shown_command(argv, omit=("--commit-only",)) == (
        "PEFTBENCH_DATA_DIR=../shared/data .venv/bin/python benchmarks/parallel.py "
        "--note 'nothing else ran' configs/imdb-minilm-study-size.yaml training.precision=fp32"
    )


def test_a_path_outside_the_repository_does_not_name_the_machine(shown_command) -> None:
    shown = shown_command(
        [
            "benchmarks/speed.py",
            "--data",
            "/home/someone/datasets/imdb",
            "/home/someone/my data/trec",
            "data.dataset=/home/someone/my data/rte",
            "--note=copied from /home/someone/notes",
        ]
    )
    assert shown.endswith(
        "benchmarks/speed.py --data '…/datasets/imdb' '…/my data/trec' "
        "'data.dataset=…/my data/rte' '--note=copied from …/someone/notes'"
    )
    assert "home" not in shown


@pytest.mark.parametrize("argv", [["experiment.py"], ["./benchmarks/experiment.py"]])
def test_the_script_is_named_from_the_repository_root(shown_command, argv: list[str]) -> None:
    assert shown_command(argv).endswith(".venv/bin/python benchmarks/experiment.py")
