"""Experiments: grids of training runs from one YAML file, the main job (``seldepth demo``) and active learning.

``spec.py`` reads an experiment file; ``runner.py`` runs it (each run trained, dissected and ablated in a
worker process, on this machine or on a SLURM cluster: ``executors.py``); ``summary.py`` gathers the finished runs into
tables; ``demo.py`` is the main job; ``active.py`` runs active-learning rounds, choosing images with
``uncertainty.py`` (MC dropout, ensembles, random).

Example:
    >>> from seldepth.experiments import run_experiment  # doctest: +SKIP
    >>> summary = run_experiment("configs/experiments/selectivity_meter_xxs.yaml", "runs/grid", quick=True)  # doctest: +SKIP
"""

from seldepth.experiments.spec import ExperimentSpec, read_experiment

__all__ = ["ExperimentSpec", "read_experiment", "run_experiment", "run_spec"]


def __getattr__(name: str):
    # the runner is imported on first use: ``python -m seldepth.experiments.runner`` (the worker) must not find
    # it imported already by this package
    if name in ("run_experiment", "run_spec"):
        from seldepth.experiments import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
