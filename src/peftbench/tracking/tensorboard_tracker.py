"""TensorBoard: event files per run under output_dir/tensorboard/ (search trials one level down).

    output_dir/tensorboard/lora-seed0/                          a final run
    output_dir/tensorboard/lora-search/lora-search-learning_rate=0.001/   a search trial
    output_dir/tensorboard/report/                              the experiment's report

`tensorboard --logdir output_dir/tensorboard` shows them side by side. TensorBoard has no
artifact store: the record and predictions are logged as text, files of other kinds by path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peftbench.tracking.base import RunIdentity, artifact_path

TEXT_CHARS = 100_000  # larger files are referred to by path


class TensorboardTracker:
    def __init__(self, settings: Any, identity: RunIdentity) -> None:
        from torch.utils.tensorboard import SummaryWriter

        base = Path(settings.tensorboard_dir)
        if identity.parent is not None:
            base = base / identity.parent
        self.log_dir = base / identity.run_name
        self.writer = SummaryWriter(log_dir=str(self.log_dir))
        self.writer.add_text("tags", _markdown_table(identity.tags), 0)

    def log_params(self, params: dict[str, Any]) -> None:
        self.writer.add_text("config", _markdown_table(params), 0)

    def log_step_metrics(self, steps: list[tuple[int, dict[str, float]]]) -> None:
        for step, values in steps:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)
        self.writer.flush()  # once per batch of steps

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        self.log_step_metrics([(step, values)])

    def log_artifact(self, path: Path, folder: str = ".") -> None:
        path = Path(path)
        name = artifact_path(path, folder)
        if path.suffix in (".json", ".md", ".csv") and path.stat().st_size <= TEXT_CHARS:
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".json":
                text = "```\n" + json.dumps(json.loads(text), indent=2) + "\n```"
            self.writer.add_text(f"files/{name}", text, 0)
        else:
            self.writer.add_text(f"files/{name}", f"saved at {path.resolve()}", 0)

    def finish(self, status: str) -> None:
        self.writer.add_text("status", status, 0)
        self.writer.close()

    def location(self) -> dict[str, Any]:
        return {"log_dir": str(self.log_dir)}


def _markdown_table(values: dict[str, Any]) -> str:
    rows = [f"| {key} | {json.dumps(value)} |" for key, value in values.items()]
    return "\n".join(["| name | value |", "| --- | --- |", *rows])
