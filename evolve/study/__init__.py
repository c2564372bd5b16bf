"""The nightly loop: Optuna proposes, the pipeline evaluates on tune queries, MLflow records.

One :func:`run_study` call is one ``evolve run`` invocation (a "night"): one MLflow parent run, one child run
per trial. The study lives in persistent Optuna storage and is continued night after night.

Modules, one concern each: ``_options`` (what a night is asked), ``_identity`` (which study, its splits),
``_sampling`` (sampler and pruner), ``_objective`` (one trial), ``_fusion`` (``fusion.optimize``), ``_champion`` (the champion as a trial),
``_recovery`` (dead workers, engines), ``_report`` (best trial, sealed report metrics, artifacts), ``_night``
(the night itself), ``_pruner`` (Wilcoxon against a comparable trial), ``_view`` (a study as the commands after a
night see it). What the trials recorded (the config of trial N, comparable trials) is read through
:mod:`evolve.trials`, below this package, so :mod:`evolve.gold` reads it without importing the loop.
"""

from evolve.study._champion import champion_config, enqueue_champion
from evolve.study._fusion import optimize_fusion
from evolve.study._identity import (
    comparable_trials,
    current_trials,
    load_study_data,
    load_study_dataset,
    open_study,
    prepare_study,
    study_identity,
    study_splits,
)
from evolve.study._night import prepare_workers, run_study, seal_after_workers
from evolve.study._objective import Objective
from evolve.study._options import ATTR, LATENCY, NightSummary, StudyOptions, parse_objectives
from evolve.study._report import best_trial_info, seal_report, sealed_report
from evolve.study._view import StudyView, view_study
from evolve.trials import trial_config

__all__ = [
    "ATTR",
    "LATENCY",
    "NightSummary",
    "StudyView",
    "Objective",
    "StudyOptions",
    "best_trial_info",
    "champion_config",
    "comparable_trials",
    "current_trials",
    "enqueue_champion",
    "load_study_data",
    "load_study_dataset",
    "open_study",
    "optimize_fusion",
    "parse_objectives",
    "prepare_study",
    "prepare_workers",
    "run_study",
    "seal_after_workers",
    "seal_report",
    "sealed_report",
    "study_identity",
    "study_splits",
    "trial_config",
    "view_study",
]
