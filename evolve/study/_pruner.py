"""The pruner: optuna's Wilcoxon signed-rank test on per-query scores, against the right best trial.

optuna's ``WilcoxonPruner`` compares a running trial with ``study.best_trial``. In evolve that trial may have
been scored on an older corpus (its per-query scores say nothing about today's), and it may have no
intermediate values at all (a repeat answered from an earlier result, a ``--no-prune`` trial of an older evolve),
which makes optuna's pruner stop pruning for good. :class:`ComparableWilcoxonPruner` runs the same test (same
``p_threshold``, ``n_startup_steps``, ``zsplit`` and the same "mean is better: keep it" safety) against the best
trial that :func:`pairable_trials` returns *and* that has intermediate values.
"""

from __future__ import annotations

import logging

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from evolve.study._identity import comparable_trials
from evolve.study._options import ATTR

log = logging.getLogger("evolve.study")

__all__ = ["ComparableWilcoxonPruner", "pairable_trials"]


def pairable_trials(study, trial: FrozenTrial) -> list[FrozenTrial]:
    """The COMPLETE trials whose per-query scores can be paired with ``trial``'s: scored on the same corpus and the
    same tune gold (the ``evolve.corpus_fingerprint`` and ``evolve.gold_fingerprint`` the objective sets before
    any report): once gold grows, step ``i`` of an older trial is another query."""
    fp = trial.user_attrs.get(ATTR + "corpus_fingerprint")
    if fp is None:
        return []
    done = comparable_trials(study, fp, trial.user_attrs.get(ATTR + "gold_fingerprint"), states=(TrialState.COMPLETE,))
    return [t for t in done if t.number != trial.number]


class ComparableWilcoxonPruner(BasePruner):
    """Prune a trial when a one-sided Wilcoxon signed-rank test on its per-query scores (paired by step, i.e. by
    query) says it is worse than the best comparable trial with intermediate values, at ``p_threshold``."""

    def __init__(self, *, p_threshold: float = 0.1, n_startup_steps: int = 2, comparable=pairable_trials):
        if n_startup_steps < 0:
            raise ValueError(f"n_startup_steps must be nonnegative, got {n_startup_steps}")
        if not 0.0 <= p_threshold <= 1.0:
            raise ValueError(f"p_threshold must be in [0, 1], got {p_threshold}")
        self._p_threshold = p_threshold
        self._n_startup_steps = n_startup_steps
        self._comparable = comparable
        self._told: set[int] = set()

    def reference(self, study, trial: FrozenTrial) -> FrozenTrial | None:
        """The trial to compare with: the best comparable trial that has finite intermediate values."""
        maximize = study.direction == StudyDirection.MAXIMIZE
        ranked = sorted(self._comparable(study, trial), key=lambda t: (-t.value if maximize else t.value, t.number))
        for t in ranked:
            values = list(t.intermediate_values.values())
            if values and np.all(np.isfinite(values)):
                if t is not ranked[0] and ranked[0].number not in self._told:
                    self._told.add(ranked[0].number)
                    log.info("pruning against trial %d: the best comparable trial %d has no per-query values",
                             t.number, ranked[0].number)
                return t
        return None

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        import scipy.stats as ss

        if not trial.intermediate_values:
            return False
        steps, values = np.array(list(trial.intermediate_values.items()), dtype=float).T
        if not np.all(np.isfinite(values)):
            return False
        best = self.reference(study, trial)
        if best is None:
            return False
        best_steps, best_values = np.array(list(best.intermediate_values.items()), dtype=float).T
        _, idx, best_idx = np.intersect1d(steps, best_steps, return_indices=True)
        diff = values[idx] - best_values[best_idx]
        if len(diff) < max(2, self._n_startup_steps):
            return False
        maximize = study.direction == StudyDirection.MAXIMIZE
        mean_here, mean_best = values[idx].mean(), best_values[best_idx].mean()
        average_is_best = mean_best <= mean_here if maximize else mean_best >= mean_here
        p = ss.wilcoxon(diff, alternative="less" if maximize else "greater", zero_method="zsplit").pvalue
        if p < self._p_threshold and average_is_best:
            return False  # the test says worse, the mean says not: keep it, as optuna's pruner does
        return bool(p < self._p_threshold)
