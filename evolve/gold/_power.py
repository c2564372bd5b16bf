"""Can this many holdout queries promote anything? The minimum detectable difference of a paired test.

    MDE = (z(1 - alpha) + z(1 - beta)) * sd / sqrt(n)

on the study's objective (``metric``; nDCG@10 by default), with ``n`` the holdout queries a promotion tests on,
``alpha`` the level the look is actually tested at (``promote-config`` passes its look's level from
:mod:`evolve.looks`, about 0.0005 for the first look; ``gold assess`` its ``--max-p``), one-sided, power
1 - beta = 0.8 (at alpha 0.05 the factor is 1.6449 + 0.8416 = 2.4865), and ``sd`` the standard deviation (n - 1
in the denominator) of the per-query differences between the champion and its strongest rival, the best other
completed trial on the same corpus and tune gold; with no rival, of the champion's own per-query scores. Both
come from the trials' per-query scores on *tune* queries (``per_query.tsv``), so estimating the spread never
looks at the holdout.

Two warnings say "too few queries to promote anything":

- ``n`` below :func:`min_queries_one_loss`: an exact paired randomization test over ``n`` queries cannot reach a
  p-value below ``2**-n`` (:func:`min_queries`: at alpha 0.05 five queries are the least that can ever pass, and
  only if every one favours the candidate), and a sign test passes with one loss only from ``(n + 1) / 2**n <=
  alpha``: 8 queries at 0.05 (7 of 8: p = 9/256 = 0.035), 12 at 0.005 (11 of 12: p = 13/4096 = 0.0032);
- an MDE above :data:`MDE_WARN` = 0.05, when sd comes from paired differences: on SciFact the whole first
  night's gain over the shipped default was +0.051 nDCG@10 on holdout, and later gains (a reranker, a better
  fusion) are about +0.01 (README), so a set that cannot see 0.05 will keep the champion whatever tuning finds.

With no rival, the sd of the champion's own scores ``sigma_X`` stands in for the sd of the differences
``Y - X``. Since ``Var(Y - X) = sigma_X**2 + sigma_Y**2 - 2 rho sigma_X sigma_Y``, the MDE it gives is an upper
bound exactly when the rival's scores correlate with the champion's by ``rho >= sigma_Y / (2 sigma_X)`` (with
equal spreads: rho >= 0.5). Configs retrieving from one corpus usually do (SciFact, 571 tune queries, BM25
0.9/0.4 against 1.5/0.75: 0.391 against 0.088 paired, MDE 0.063 against 0.014 at its 236 holdout queries), but
nothing guarantees it, so that MDE is printed as a rough guide ("if rho >= sigma_Y / (2 sigma_X)") and does not
raise the warning.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ALPHA", "POWER", "MDE_WARN", "METRIC", "Power", "champion_power", "min_detectable", "min_queries",
           "min_queries_one_loss", "power_for", "promotion_warning", "size_warning", "trial_per_query", "z_factor"]

ALPHA = 0.05
POWER = 0.8
#: an MDE above this cannot confirm the gains tuning finds (see the module docstring)
MDE_WARN = 0.05
METRIC = "ndcg@10"


def _label(metric: str) -> str:
    return metric.replace("ndcg", "nDCG")


def z_factor(alpha: float = ALPHA, power: float = POWER) -> float:
    """z(1 - alpha) + z(power): 2.4865 at alpha 0.05 (one-sided) and power 0.8."""
    nd = statistics.NormalDist()
    return nd.inv_cdf(1.0 - alpha) + nd.inv_cdf(power)


def min_detectable(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    return z_factor(alpha, power) * sd / math.sqrt(n)


def min_queries(alpha: float = ALPHA) -> int:
    """The fewest queries an exact paired sign-flip test needs to reach p <= alpha at all (2**-n <= alpha)."""
    return max(1, math.ceil(math.log2(1.0 / alpha)))


def min_queries_one_loss(alpha: float = ALPHA) -> int:
    """The fewest queries at which a one-sided sign test passes with one loss: ``(n + 1) / 2**n <= alpha`` (8 at
    0.05, 12 at 0.005)."""
    n = min_queries(alpha)
    while (n + 1) / 2.0**n > alpha:
        n += 1
    return n


@dataclass
class Power:
    """The MDE of a promotion test on ``n`` holdout queries, and where its spread came from."""

    n: int
    sd: float | None
    #: how sd was estimated, in words ("trial 3 (champion) vs trial 7, 61 tune queries")
    sd_source: str
    alpha: float = ALPHA
    power: float = POWER
    #: sd is of paired differences (champion vs rival); otherwise of the champion's own scores, whose MDE is an
    #: upper bound only if rho >= sigma_Y / (2 sigma_X) (on SciFact about 4.5 times the paired one): no warning
    paired: bool = False
    #: the metric the spread is of: the study's objective
    metric: str = METRIC

    @property
    def label(self) -> str:
        """The metric as people write it: ``nDCG@10``, ``mrr@10``."""
        return _label(self.metric)

    @property
    def mde(self) -> float | None:
        if self.sd is None or self.n < 1:
            return None
        return min_detectable(self.sd, self.n, self.alpha, self.power)

    def formula(self) -> str:
        return (f"MDE = (z(1-alpha) + z(1-beta)) * sd / sqrt(n), alpha {self.alpha:.3g} one-sided, power "
                f"{self.power:g}: {z_factor(self.alpha, self.power):.4f} * sd / sqrt(n)")


def size_warning(p: Power) -> str | None:
    """One line when ``p.n`` holdout queries are too few to promote anything, else None."""
    floor = min_queries_one_loss(p.alpha)
    if p.n < floor:
        return (f"warning: {p.n} holdout quer(y/ies): too few queries to promote anything (a paired test needs at least "
                f"{min_queries(p.alpha)} to reach p <= {p.alpha:.3g} at all, and {floor} to allow a single loss); "
                "add gold")
    mde = p.mde
    if mde is not None and p.paired and mde > MDE_WARN:
        return (f"warning: {p.n} holdout queries detect only {p.label} gains of {mde:.3f} or more (MDE at alpha "
                f"{p.alpha:.3g}, power {p.power:g}): too few queries to promote anything but a gain above "
                f"{MDE_WARN:g}; add gold")
    return None


def promotion_warning(view, workspace, champion, *, alpha: float = ALPHA, metric: str = METRIC) -> str | None:
    """The warning ``gold assess`` prints, for ``promote-config`` (``alpha``: the level the look is tested at,
    ``metric``: the study's objective): None when the study's holdout is large enough."""
    return size_warning(power_for(view, workspace, champion, alpha=alpha, metric=metric))


def trial_per_query(runs_dir: Path, study_name: str, trial, metric: str = METRIC) -> dict[str, float] | None:
    """A trial's per-query tune scores from ``runs/<study>/trial-NNNNN/per_query.tsv`` (a repeat reads the trial it
    repeats); None when the file is not there (another machine ran it, or it was cleaned up)."""
    number = trial.user_attrs.get("evolve.repeat_of", trial.number)
    path = Path(runs_dir) / study_name / f"trial-{int(number):05d}" / "per_query.tsv"
    if not path.is_file():
        return None
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    cols = header.split("\t")
    if metric not in cols:
        return None
    i = cols.index(metric)
    out = {}
    for row in rows:
        parts = row.split("\t")
        if len(parts) == len(cols) and parts[i] != "-":  # "-": no value (context_recall without an answer)
            out[parts[0]] = float(parts[i])
    return out


def _config_fp(trial, study) -> str | None:
    from evolve.trials import trial_config

    cfg = trial_config(study, trial)
    return cfg.fingerprint() if cfg is not None else None


def power_for(view, workspace, champion, *, alpha: float = ALPHA, n: int | None = None,
              metric: str = METRIC) -> Power:
    """The power of a promotion test in the study ``view`` (:class:`~evolve.study.StudyView`): ``n`` holdout
    queries (default: the study's), sd from the champion's trial and its strongest rival on this corpus and tune
    gold. ``sd`` is None when no champion trial has per-query scores here."""
    from optuna.trial import TrialState

    from evolve.trials import comparable_trials

    if n is None:
        holdout = view.splits.qrels(view.dataset, "holdout")
        # a score on answers (context_recall) exists only for queries with a reference answer: the test has those
        n = (sum(1 for q in holdout if view.dataset.answers.get(q)) if metric.startswith("context_recall")
             else len(holdout))
    study = view.study
    done = comparable_trials(study, view.corpus_fp, view.gold_fp, states=(TrialState.COMPLETE,))
    champ_fp = champion.fingerprint()
    champ = [t for t in done if _config_fp(t, study) == champ_fp]
    if not champ:
        return Power(n, None, "no trial of the champion on this corpus and gold", alpha, metric=metric)
    champ_t = champ[0]
    champ_scores = trial_per_query(workspace.runs_dir, study.study_name, champ_t, metric)
    if not champ_scores:
        return Power(n, None, f"trial {champ_t.number} (champion) has no per-query {_label(metric)} scores here", alpha,
                     metric=metric)
    rivals = sorted((t for t in done if _config_fp(t, study) != champ_fp), key=lambda t: -t.values[0])
    for rival in rivals:
        scores = trial_per_query(workspace.runs_dir, study.study_name, rival, metric)
        common = sorted(set(scores or {}) & set(champ_scores))
        if len(common) >= 2:
            diffs = [scores[q] - champ_scores[q] for q in common]
            return Power(n, statistics.stdev(diffs),
                         f"per-query {_label(metric)} differences, trial {champ_t.number} (champion) vs trial {rival.number} "
                         f"(strongest rival), {len(common)} tune queries", alpha, paired=True, metric=metric)
    if len(champ_scores) < 2:
        return Power(n, None, f"trial {champ_t.number} (champion) scored fewer than 2 queries", alpha, metric=metric)
    return Power(n, statistics.stdev(champ_scores.values()),
                 f"the champion's own per-query {_label(metric)} (trial {champ_t.number}, no rival), "
                 f"{len(champ_scores)} tune queries", alpha, metric=metric)


def champion_power(dataset, splits, champion, *, cache=None, progress=None, alpha: float = ALPHA,
                   n: int | None = None) -> Power:
    """No trial to read: sd of the champion's own per-query nDCG@10, evaluated here on the *tune* queries (the
    holdout is not looked at)."""
    from evolve.pipeline import Pipeline
    from evolve.progress import null_progress

    n = len(splits.qrels(dataset, "holdout")) if n is None else n
    tune = splits.qrels(dataset, "tune")
    if len(tune) < 2:
        return Power(n, None, f"{len(tune)} tune quer(y/ies): too few to estimate the spread", alpha)
    pipe = Pipeline(champion, dataset, cache=cache, progress=progress or null_progress, seed=splits.seed)
    try:
        scores = pipe.evaluate(tune, split="tune", metrics=[METRIC]).per_query[METRIC]
    finally:
        pipe.close()
    return Power(n, statistics.stdev(scores.values()),
                 f"the champion's own per-query nDCG@10, evaluated on {len(scores)} tune queries (no trial to compare)",
                 alpha)
