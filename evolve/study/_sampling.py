"""How trials are proposed (TPE) and stopped early (the Wilcoxon pruner on per-query scores)."""

from __future__ import annotations

from evolve.study._options import StudyOptions

__all__ = [
    "make_sampler",
    "make_pruner",
]


def make_sampler(seed: int | None):
    import optuna

    return optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=True, seed=seed,
                                      n_startup_trials=8)


def make_pruner(opts: StudyOptions):
    import optuna

    if not opts.prune or len(opts.objectives) > 1:
        return optuna.pruners.NopPruner()
    return comparable_pruner(optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=max(2 * opts.prune_batch, 20)))


def comparable_pruner(inner):
    """``inner`` (Optuna's WilcoxonPruner) against the best trial scored on the same corpus and tune gold as the
    trial at hand, not the study's best overall: once gold grows, step ``i`` of an older trial is another query."""
    import optuna
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    from evolve.study._identity import comparable_trials
    from evolve.study._options import ATTR

    class _BestOf:
        def __init__(self, study, best):
            self._study, self.best_trial = study, best

        def __getattr__(self, name):
            return getattr(self._study, name)

    class ComparablePruner(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            done = comparable_trials(study, trial.user_attrs.get(ATTR + "corpus_fingerprint"),
                                     trial.user_attrs.get(ATTR + "gold_fingerprint"), states=(TrialState.COMPLETE,))
            if not done:
                return False
            pick = max if study.direction == StudyDirection.MAXIMIZE else min
            return inner.prune(_BestOf(study, pick(done, key=lambda t: t.value)), trial)

    return ComparablePruner()
