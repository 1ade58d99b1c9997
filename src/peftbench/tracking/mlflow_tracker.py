"""MLflow: a run per peftbench run, in the experiment of the config, through MlflowClient.

The store is tracking.mlflow_tracking_uri, else $MLFLOW_TRACKING_URI, else a SQLite database
in the output directory (MLflow 3's plain file store is in maintenance mode). The client is
used directly, so nothing of MLflow's process-wide "active run" state is touched.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from peftbench.tracking.base import RunIdentity

# MLflow's limits: a parameter value holds 6,000 characters; a batch 1,000 metrics.
PARAM_CHARS = 6000
BATCH_METRICS = 1000
STATUS = {"success": "FINISHED", "failed": "FAILED", "canceled": "KILLED"}


def experiment_id(client: Any, name: str, artifact_location: str | None) -> str:
    """The experiment's id, made if it does not exist yet."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except Exception:  # made meanwhile by another run's process
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def prepare_store(settings: Any, searches: list[tuple[str, str, str]]) -> None:
    """Create the store (a new SQLite database is migrated to MLflow's schema on first use),
    the experiment and the parent run of each search ((name, label, method)), once, before
    the runs start: two runs' processes doing it at the same moment race in that migration
    ("table _alembic_tmp_... already exists"), and two trials would each make a parent."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_uri)
    experiment = experiment_id(client, settings.experiment, settings.mlflow_artifacts)
    for name, label, method in searches:
        parent_run(client, experiment, name, label, method)


def parent_run(client: Any, experiment: str, name: str, label: str, method: str) -> str:
    """The run that a method's search trials nest under: found, or made."""
    found = client.search_runs(
        [experiment], filter_string=f"tags.`peftbench.parent` = '{name}'", max_results=1
    )
    if found:
        return found[0].info.run_id
    tags = {
        "peftbench.parent": name,
        "peftbench.label": label,
        "peftbench.method": method,
        "peftbench.role": "search",
    }
    run = client.create_run(experiment, run_name=name, tags=tags)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


class MlflowTracker:
    def __init__(self, settings: Any, identity: RunIdentity) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = settings.mlflow_uri
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment_id = experiment_id(
            self.client, settings.experiment, settings.mlflow_artifacts
        )
        tags = dict(identity.tags)
        if identity.parent is not None:
            # Made by the driver before the runs (prepare_store); by this trial if that failed.
            tags["mlflow.parentRunId"] = parent_run(
                self.client,
                self.experiment_id,
                identity.parent,
                identity.tags["peftbench.label"],
                identity.tags["peftbench.method"],
            )
        run = self.client.create_run(self.experiment_id, run_name=identity.run_name, tags=tags)
        self.run_id = run.info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(
            self.run_id, params=[Param(k, str(v)[:PARAM_CHARS]) for k, v in params.items()]
        )

    def log_step_metrics(self, steps: list[tuple[int, dict[str, float]]]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(name, float(value), now, step)
            for step, values in steps
            for name, value in values.items()
        ]
        for start in range(0, len(metrics), BATCH_METRICS):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + BATCH_METRICS])

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        self.log_step_metrics([(step, values)])

    def log_artifact(self, path: Path, folder: str = ".") -> None:
        self.client.log_artifact(self.run_id, str(path), None if folder == "." else folder)

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, STATUS.get(status, "FAILED"))

    def location(self) -> dict[str, Any]:
        return {
            "tracking_uri": self.uri,
            "experiment_id": self.experiment_id,
            "run_id": self.run_id,
        }


def end_abandoned_runs(settings: Any, tags: dict[str, str], since: float, status: str) -> int:
    """Mark this run's MLflow runs that are still RUNNING and started at or after `since`
    (an attempt whose process died) as `status`; how many there were."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_uri)
    experiment = client.get_experiment_by_name(settings.experiment)
    if experiment is None:
        return 0
    same_run = " and ".join(
        f"tags.`{key}` = '{tags[key]}'" for key in ("peftbench.run_id", "peftbench.config_hash")
    )
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"{same_run} and attributes.status = 'RUNNING' "
        f"and attributes.start_time >= {int(since * 1000)}",
    )
    for run in found:
        client.set_terminated(run.info.run_id, STATUS.get(status, "FAILED"))
    return len(found)
