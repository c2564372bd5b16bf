"""What a study's trials recorded, read by the commands after a night: the config of trial N, and the trials
scored on one corpus and one tune gold.

It sits below both the loop (:mod:`evolve.study`, which writes these attributes) and its readers (``promote-config``,
``evolve serve --challenger``, the power estimate in :mod:`evolve.gold`), so that none of them reads study
internals (``repeat_of``) on its own and :mod:`evolve.gold` never imports the study package that imports it.
"""

from __future__ import annotations

__all__ = ["ATTR", "trial_config", "comparable_trials", "current_trials"]

#: prefix of every study/trial attribute evolve writes
ATTR = "evolve."


def trial_config(study, trial):
    """The :class:`~evolve.config.PipelineConfig` trial ``trial`` (a frozen trial, or its number) of ``study`` ran:
    its own recorded config, or for a repeat (same params as an earlier trial: the recorded value was reused) the
    config of the trial it repeats. None when there is no such trial or it recorded no config (it failed before)."""
    from evolve.config import PipelineConfig

    if isinstance(trial, int):
        trial = next((t for t in study.get_trials(deepcopy=False) if t.number == trial), None)
        if trial is None:
            return None
    cfg = trial.user_attrs.get(ATTR + "config")
    if not cfg and ATTR + "repeat_of" in trial.user_attrs:
        number = int(trial.user_attrs[ATTR + "repeat_of"])
        first = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
        cfg = first.user_attrs.get(ATTR + "config") if first is not None else None
    return PipelineConfig.model_validate(cfg) if cfg else None


def comparable_trials(study, corpus_fingerprint: str | None, gold_fingerprint: str | None, states=None):
    """Trials scored on this corpus and this tune gold (None: any). A trial from before gold fingerprints counts
    as scored on the study's ``legacy_gold_fingerprint`` (its stored tune split when hashed roles came)."""
    trials = study.get_trials(deepcopy=False, states=states)
    if corpus_fingerprint is not None:
        trials = [t for t in trials if t.user_attrs.get(ATTR + "corpus_fingerprint") == corpus_fingerprint]
    if gold_fingerprint is not None:
        legacy = study.user_attrs.get(ATTR + "legacy_gold_fingerprint")
        trials = [t for t in trials if t.user_attrs.get(ATTR + "gold_fingerprint", legacy) == gold_fingerprint]
    return trials


def current_trials(study, corpus_fingerprint: str | None, states=None):
    """Trials on the current corpus, whatever their gold (all corpora when ``corpus_fingerprint`` is None)."""
    return comparable_trials(study, corpus_fingerprint, None, states)
