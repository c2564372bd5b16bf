"""How trials are proposed (TPE) and stopped early (the Wilcoxon pruner on per-query scores, against the best
trial on the same corpus: :mod:`evolve.study._pruner`)."""

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
    from evolve.study._pruner import ComparableWilcoxonPruner

    return ComparableWilcoxonPruner(p_threshold=0.1, n_startup_steps=max(2 * opts.prune_batch, 20))
