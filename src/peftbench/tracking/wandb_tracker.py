"""Weights & Biases: a W&B run per peftbench run, in a project named after the experiment.

Needs the wandb package (not a peftbench dependency) and either a login (`wandb login`) or
WANDB_MODE=offline, which writes the run under output_dir/wandb for a later `wandb sync`.
Search trials are grouped under "<label>-search" (W&B's group is its form of nesting).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from peftbench.tracking.base import RunIdentity, artifact_path


class WandbTracker:
    def __init__(self, settings: Any, identity: RunIdentity) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            project=settings.experiment,
            name=identity.run_name,
            group=identity.parent or identity.tags.get("peftbench.label"),
            job_type=identity.tags.get("peftbench.role"),
            tags=[identity.tags.get("peftbench.method", "report")],
            config=identity.tags,
            dir=settings.output_dir,
            # Beside any run the user has open in the same process (a notebook's), not ending it.
            reinit="create_new",
        )
        # Everything on the step axis of the training loss (evaluations at their epoch's last
        # step), not on W&B's count of log calls.
        self.run.define_metric("train/step")
        for prefix in ("train/*", "eval/*", "time/*"):
            self.run.define_metric(prefix, step_metric="train/step")

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_step_metrics(self, steps: list[tuple[int, dict[str, float]]]) -> None:
        for step, values in steps:
            self.run.log({**values, "train/step": step})

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        if any(name.startswith("eval/") for name in values):
            self.run.log({**values, "train/step": step})
        else:
            self.run.summary.update(values)

    def log_artifact(self, path: Path, folder: str = ".") -> None:
        # Named by the whole file name (report.md and report.html are two artifacts), in its
        # folder; W&B's names allow letters, digits, "-", "_" and ".".
        where = artifact_path(path, folder)
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", f"{self.run.name}-{where}")
        artifact = self.wandb.Artifact(name, type="peftbench")
        artifact.add_file(str(path), name=where)
        self.run.log_artifact(artifact)

    def finish(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "success" else 1)

    def location(self) -> dict[str, Any]:
        return {"project": self.run.project, "run_id": self.run.id, "dir": self.run.dir}
