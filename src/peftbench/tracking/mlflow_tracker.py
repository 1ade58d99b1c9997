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


def prepare_store(settings: Any) -> None:
    """Create the store (a new SQLite database is migrated to MLflow's schema on first use)
    and the experiment, once, before the runs start: two runs' processes doing it at the
    same moment race in that migration ("table _alembic_tmp_... already exists")."""
    from mlflow.tracking import MlflowClient

    experiment_id(
        MlflowClient(tracking_uri=settings.mlflow_uri),
        settings.experiment,
        settings.mlflow_artifacts,
    )


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
            tags["mlflow.parentRunId"] = self._parent_run(identity.parent, identity.tags)
        run = self.client.create_run(self.experiment_id, run_name=identity.run_name, tags=tags)
        self.run_id = run.info.run_id

    def _parent_run(self, name: str, tags: dict[str, str]) -> str:
        """The run that a method's search trials nest under, made by the first trial."""
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`peftbench.parent` = '{name}'",
            max_results=1,
        )
        if found:
            return found[0].info.run_id
        parent_tags = {
            "peftbench.parent": name,
            "peftbench.label": tags["peftbench.label"],
            "peftbench.method": tags["peftbench.method"],
            "peftbench.role": "search",
        }
        run = self.client.create_run(self.experiment_id, run_name=name, tags=parent_tags)
        self.client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

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

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

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
