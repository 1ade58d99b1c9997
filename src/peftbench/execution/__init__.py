"""Executing an experiment's runs: the scheduler, and the local and Ray backends."""

from peftbench.execution.runner import LOCK_FILE, ExperimentOutcome, run_experiment

__all__ = ["LOCK_FILE", "ExperimentOutcome", "run_experiment"]
