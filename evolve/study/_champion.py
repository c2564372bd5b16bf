"""The champion as a trial: where it comes from, and enqueued first each night."""

from __future__ import annotations

import logging

from evolve.config import PipelineConfig, load_config
from evolve.search_space import SearchSpace
from evolve.study._identity import comparable_trials
from evolve.study._options import ATTR, StudyOptions
from evolve.workspace import Workspace

log = logging.getLogger("evolve.study")

__all__ = [
    "champion_config",
    "enqueue_champion",
]


def champion_config(workspace: Workspace, space: SearchSpace | None = None) -> PipelineConfig:
    """The workspace champion (as :func:`evolve.promote.current_champion` reads it: a change recorded in the
    history counts even if a crash kept it from ``champion.yaml``), else the search space's starting point, else
    the shipped default."""
    from evolve.promote import DEFAULT_SOURCE, current_champion

    cfg, source = current_champion(workspace)
    if source != DEFAULT_SOURCE:
        return cfg
    return space.start_config() if space is not None else load_config()


def enqueue_champion(study, opts: StudyOptions, corpus_fp: str, gold_fp: str | None = None) -> None:
    """Enqueue the champion unless a trial on this corpus and tune gold already has its params."""
    from optuna.trial import TrialState

    champ = champion_config(opts.workspace, opts.space)
    params = opts.space.params_of(champ)
    if params is None:
        log.warning("the champion lies outside the search space: it is not re-evaluated as a trial")
        return
    for t in comparable_trials(study, corpus_fp, gold_fp, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if t.params == params:
            return
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    if any(t.system_attrs.get("fixed_params") == params for t in waiting):
        return
    study.enqueue_trial(params, user_attrs={ATTR + "champion": True})
