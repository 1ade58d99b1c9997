"""RunSpec: one run of an experiment (method, params, seed, model, training), fully resolved.

The runner makes one per run and hands it to the worker that trains it; the run record's
`run_info` and `config_hash` are derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from peftbench.config import ModelConfig, TrainingConfig, to_plain


@dataclass
class RunSpec:
    """Everything a worker process needs to do one run (picklable)."""

    run_id: str
    label: str
    method: str
    params: Any  # the method's params dataclass
    seed: int
    experiment: str
    config_hash: str
    model: ModelConfig
    training: TrainingConfig
    data_cache: str  # file written by data.prepare_data
    run_dir: str
    # "final" runs are the results; "search" runs train on the training subset less a
    # validation split and are scored on that split, to choose hyperparameters.
    role: str = "final"
    search: dict[str, Any] | None = None  # for a final run: the search that chose its params
    # Where the run also logs (tracking.TrackingSettings); not part of what decides its result.
    tracking: Any = None

    def resolved_config(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "method_params": to_plain(self.params),
            "seed": self.seed,
            "model": to_plain(self.model),
            "training": to_plain(self.training),
        }
