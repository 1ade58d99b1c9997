"""Is the default pipeline's accuracy within the noise of the reference's? LoRA, seeds 0-2.

The speed benchmark trains one seed per pipeline for one epoch; at 32 optimiser steps the run
to run spread is large, so this repeats LoRA with seeds 1 and 2 (seed 0 comes from
results/benchmark-speed/) and once more with the default pipeline but the model's attention
dropout, to separate that switch from the rest of the pipeline. The runs:

    COMMON='training.epochs=1 training.max_length=512 data.train_size=500 data.test_size=500'
    LORA='methods={"lora": {"learning_rate": 0.002}}'
    peftbench run configs/imdb-minilm-cpu.yaml "$LORA" $COMMON training.pipeline=default \\
        output_dir=results/speed-seeds/lora-default --seeds 1,2
    peftbench run configs/imdb-minilm-cpu.yaml "$LORA" $COMMON training.pipeline=default \\
        training.attention_dropout=model \\
        output_dir=results/speed-seeds/lora-default-attention-dropout-model --seeds 0,1,2
    peftbench run configs/imdb-minilm-cpu.yaml "$LORA" $COMMON training.pipeline=reference \\
        output_dir=results/speed-seeds/lora-reference --seeds 1,2

then `python benchmarks/speed_accuracy_seeds.py` prints accuracy per seed, the mean and its t
interval per variant, and per seed McNemar's exact test of each variant against the reference.
"""

from __future__ import annotations

import json
from pathlib import Path

from peftbench import stats
from peftbench.results import load_records, predictions_path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "reference": [
        ROOT / "results/benchmark-speed/lora-reference",
        ROOT / "results/speed-seeds/lora-reference",
    ],
    "default": [
        ROOT / "results/benchmark-speed/lora-default",
        ROOT / "results/speed-seeds/lora-default",
    ],
    "default, attention dropout 0.1": [
        ROOT / "results/speed-seeds/lora-default-attention-dropout-model",
    ],
}


def load(directories: list[Path]) -> dict[int, dict]:
    """seed -> {accuracy, train_s, labels, predictions} of every finished LoRA run."""
    runs = {}
    for directory in directories:
        for record in load_records(directory)[0]:
            if record["run_info"]["method"] != "lora" or record["status"] != "success":
                continue
            path = predictions_path(directory, record["run_id"])
            predictions = json.loads(path.read_text())
            runs[record["run_info"]["seed"]] = {
                "accuracy": record["metrics"]["accuracy"],
                "train_s": record["train_info"]["train_time_s"],
                "labels": predictions["labels"],
                "predictions": predictions["predictions"],
            }
    return runs


def main() -> None:
    loaded = {name: load(dirs) for name, dirs in VARIANTS.items()}
    reference = loaded["reference"]
    print("| variant | seed | accuracy (%) | train s | vs reference: McNemar p |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, runs in loaded.items():
        for seed, run in sorted(runs.items()):
            p = "—"
            if name != "reference" and seed in reference:
                ref = reference[seed]
                test = stats.mcnemar_exact(ref["labels"], ref["predictions"], run["predictions"])
                p = f"{test.p_value:.3f}"
            print(f"| {name} | {seed} | {100 * run['accuracy']:.1f} | {run['train_s']:.0f} | {p} |")
        accuracies = [100 * run["accuracy"] for run in runs.values()]
        interval = stats.seed_interval(accuracies)
        if interval is not None:
            print(
                f"| {name} | mean of {len(accuracies)} | {interval.estimate:.1f} "
                f"[{interval.low:.1f}, {interval.high:.1f}] | | |"
            )


if __name__ == "__main__":
    main()
