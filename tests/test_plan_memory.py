"""`plan`'s memory prediction: the width a typical training batch is padded to, read from the
data exactly as the training loop batches it, and the peaks at that width beside the worst
case; the precision it is predicted in; and a Ctrl-C or SIGTERM stopping it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import drop_a_ctrl_c, tiny_config, write_config, write_dataset

from peftbench.cli import EXIT_INTERRUPTED
from peftbench.config import parse_config
from peftbench.data import batch_order, collate, prepare_data
from peftbench.interrupts import sigterm_as_interrupt
from peftbench.loop import micro_batches
from peftbench.models import load_tokenizer
from peftbench.plan_lengths import padded_widths, typical_length
from peftbench.plan_memory import describe_memory, target_of


@pytest.fixture(scope="module")
def csv_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data") / "csv-reviews", 96, 32, fmt="csv")


def _raw_config(model: Path, data: Path, tmp_path: Path, **training: object) -> dict:
    raw = tiny_config(model, data, tmp_path / "out")
    raw["data"].update({"train_size": 80, "test_size": 32})
    raw["training"].update({"max_length": 48, "train_batch_size": 8, **training})
    raw["methods"] = {"lora": {"learning_rate": 5e-3}, "full": {"learning_rate": 1e-3}}
    raw["seeds"] = [0, 1]
    return raw


def _config(model: Path, data: Path, tmp_path: Path, **training: object):
    return parse_config(_raw_config(model, data, tmp_path, **training))


def test_widths_are_those_the_training_loop_pads_to(
    tiny_roberta: Path, csv_data: Path, tmp_path: Path
) -> None:
    config = _config(tiny_roberta, csv_data, tmp_path, gradient_accumulation_steps=2)
    training = config.training
    # The loop's own path: prepared data (train and test tokenised, cached), its batch order,
    # micro-batches and collate.
    prepared, _ = prepare_data(
        config.data,
        load_tokenizer(config.model),
        "tiny",
        training.max_length,
        tmp_path / "cache",
    )
    lengths = [len(ids) for ids in prepared.train.input_ids]
    expected = []
    for seed in config.seeds:
        for epoch in range(1, training.epochs + 1):
            order = batch_order(
                lengths, training.train_batch_size, seed * 1000 + epoch, training.group_by_length
            )
            for indices in order:
                for part in micro_batches(indices, training.gradient_accumulation_steps):
                    batch = collate(prepared.train, part, prepared.pad_token_id, None)
                    expected.append(batch["input_ids"].shape[1])
    assert padded_widths(lengths, training, list(config.seeds)) == expected
    typical, how = typical_length(config)
    assert typical is not None, how
    assert typical.batches == len(expected)
    assert typical.median == sorted(expected)[(len(expected) - 1) // 2]
    assert typical.longest == max(expected) <= training.max_length
    # The synthetic reviews are shorter than max_length: a typical batch is padded to less.
    assert typical.median < training.max_length
    assert "from the data: 80 train examples tokenised" in how


def test_grouping_by_length_pads_less(tiny_roberta: Path, csv_data: Path, tmp_path: Path):
    grouped, _ = typical_length(_config(tiny_roberta, csv_data, tmp_path, group_by_length=True))
    shuffled, _ = typical_length(_config(tiny_roberta, csv_data, tmp_path, group_by_length=False))
    assert grouped is not None and shuffled is not None
    assert grouped.median <= shuffled.median
    padded, how = typical_length(_config(tiny_roberta, csv_data, tmp_path, padding="max_length"))
    assert padded is not None and padded.median == 48 and "max_length" in how


def test_plan_prints_worst_case_and_typical_peaks(
    tiny_roberta: Path, csv_data: Path, tmp_path: Path
) -> None:
    config = _config(tiny_roberta, csv_data, tmp_path)
    typical, _ = typical_length(config)
    text = describe_memory(config)
    pattern = (
        r"- (\w+): worst case at max_length 48: ([\d,]+) MiB; typical \(batches padded to "
        rf"~{typical.median} tokens, from the data\): ([\d,]+) MiB"
    )
    found = re.findall(pattern, text)
    assert [label for label, _, _ in found] == ["lora", "full"], text
    for _, worst, typical_mib in found:
        # Activations shrink with the padded length; weights and optimiser state do not.
        assert 0 < int(typical_mib.replace(",", "")) < int(worst.replace(",", ""))


def test_without_the_data_the_typical_figure_says_it_needs_it(
    tiny_roberta: Path, tmp_path: Path
) -> None:
    raw = tiny_config(tiny_roberta, tmp_path / "nowhere", tmp_path / "out")
    raw["data"]["dataset"] = "imdb"  # a Hub name, no local copy ($PEFTBENCH_DATA_DIR unset)
    raw["methods"] = {"lora": {"learning_rate": 5e-3}}
    config = parse_config(raw)
    typical, how = typical_length(config)
    assert typical is None and "needs the data at hand" in how
    text = describe_memory(config)
    assert "Typical training peak: not predicted (the typical figure needs the data" in text
    assert "worst case" in text


@pytest.mark.parametrize(("flags", "expected"), [({"avx512_bf16"}, "bf16"), (set(), "fp32")])
def test_auto_on_a_cpu_is_planned_in_the_precision_a_run_there_trains_in(
    monkeypatch: pytest.MonkeyPatch,
    tiny_roberta: Path,
    csv_data: Path,
    tmp_path: Path,
    flags: set[str],
    expected: str,
) -> None:
    """A CPU with AVX-512 BF16 trains `precision: auto` in bf16: the plan must predict that,
    not fp32 (the CPU's flags are set here, so both kinds are tried on any machine)."""
    monkeypatch.setattr("peftbench.measure.cpu_flags", lambda: flags)
    config = _config(tiny_roberta, csv_data, tmp_path, device="cpu", precision="auto")
    assert target_of(config, budget_given=False) == ("cpu", expected)
    if expected == "bf16":  # what the plan printed wrongly (fp32)
        assert "on cpu, bf16," in describe_memory(config)
    device, precision = target_of(config, budget_given=True)  # a GPU's budget: for a GPU
    assert (device, precision in ("bf16", "fp16")) == ("cuda", True)


@pytest.mark.usefixtures("ctrl_c_as_in_a_terminal")
def test_a_dropped_ctrl_c_stops_the_memory_simulation(
    tiny_roberta: Path, csv_data: Path, tmp_path: Path
) -> None:
    """The simulation runs the tensor memory tracker, whose finalizers can drop a Ctrl-C (Python
    prints and drops it there): its next step raises it instead of simulating on."""
    config = _config(tiny_roberta, csv_data, tmp_path)
    with sigterm_as_interrupt():
        assert drop_a_ctrl_c()
        with pytest.raises(KeyboardInterrupt):
            describe_memory(config)


def test_plan_stopped_by_sigterm_says_so_and_exits_130(
    tiny_roberta: Path, csv_data: Path, tmp_path: Path
) -> None:
    """SIGTERM (a scheduler, `kill`) ends `plan` as Ctrl-C does, not on the spot unannounced."""
    config = write_config(_raw_config(tiny_roberta, csv_data, tmp_path), tmp_path / "plan.yaml")
    plan = subprocess.Popen(
        [sys.executable, "-m", "peftbench.cli", "plan", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    for line in plan.stdout:
        output.append(line)
        if "predicting memory: lora" in line:  # four simulations still to run
            plan.send_signal(signal.SIGTERM)
            break
    output.append(plan.stdout.read())
    text = "".join(output)
    assert plan.wait(timeout=60) == EXIT_INTERRUPTED, text
    assert "peftbench: interrupted" in text
