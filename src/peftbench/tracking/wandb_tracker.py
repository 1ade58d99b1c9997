"""Weights & Biases: a W&B run per peftbench run, in a project named after the experiment.

Needs the wandb package (not a peftbench dependency) and either a login (`wandb login`) or
WANDB_MODE=offline, which writes the run under output_dir/wandb for a later `wandb sync`.
Search trials are grouped under "<label>-search" (W&B's group is its form of nesting).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from peftbench.tracking.base import RunIdentity


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
            reinit="finish_previous",
        )

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_step_metrics(self, steps: list[tuple[int, dict[str, float]]]) -> None:
        for step, values in steps:
            self.run.log({**values, "train/step": step})

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        if any(name.startswith("eval/") for name in values):
            self.run.log({**values, "epoch": step})
        else:
            self.run.summary.update(values)

    def log_artifact(self, path: Path) -> None:
        artifact = self.wandb.Artifact(f"{self.run.name}-{Path(path).stem}", type="peftbench")
        artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def finish(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "success" else 1)

    def location(self) -> dict[str, Any]:
        return {"project": self.run.project, "run_id": self.run.id, "dir": self.run.dir}
