"""Scoring with ranx (metrics, per-query scores, TREC run files) and the paired test that promotion uses."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_METRICS",
    "PRIMARY_METRIC",
    "evaluate_run",
    "per_query_lines",
    "mlflow_name",
    "write_trec_run",
    "quiet_ranx",
    "PairedTest",
    "paired_permutation_test",
]

PRIMARY_METRIC = "ndcg@10"
DEFAULT_METRICS = ["ndcg@10", "recall@100", "mrr@10", "map@100"]


def mlflow_name(metric: str) -> str:
    """``ndcg@10`` -> ``ndcg_at_10`` (MLflow-safe)."""
    return metric.replace("@", "_at_").replace("-", "_")


@contextlib.contextmanager
def quiet_ranx():
    """Silence numba's ``NumbaTypeSafetyWarning`` that ranx's jitted metrics and fusions raise when they compile
    (it reports a safe int64 -> uint64 cast inside ranx, not a problem of ours). Only that warning, only inside
    the block: every other warning still reaches the user."""
    with warnings.catch_warnings():
        try:
            from numba.core.errors import NumbaTypeSafetyWarning
        except ImportError:  # numba without that class: nothing to silence
            yield
            return
        warnings.simplefilter("ignore", NumbaTypeSafetyWarning)
        yield


def _ranx(qrels: dict, run: dict):
    from ranx import Qrels, Run

    q = Qrels.from_dict({qid: {d: int(r) for d, r in docs.items()} for qid, docs in qrels.items()})
    r = Run.from_dict({qid: {d: float(s) for d, s in docs.items()} for qid, docs in run.items()})
    return q, r


def evaluate_run(qrels: dict, run: dict, metrics: list[str] | None = None) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean metrics and per-query scores (metric -> query id -> score) over the queries of ``qrels``.

    A query of ``qrels`` that the run has no result for scores 0.
    """
    import numpy as np
    from ranx import evaluate

    metrics = list(metrics or DEFAULT_METRICS)
    qids = sorted(qrels)
    run = {q: (run.get(q) or {}) for q in qids}
    # ranx drops queries with an empty run: give them a dummy zero-relevance hit so they score 0
    filled = {q: (docs if docs else {"__none__": 0.0}) for q, docs in run.items()}
    q, r = _ranx({k: qrels[k] for k in qids}, filled)
    with quiet_ranx():
        scores = evaluate(q, r, metrics, return_mean=False, make_comparable=True)
    if len(metrics) == 1:
        scores = {metrics[0]: scores}
    per_query: dict[str, dict[str, float]] = {}
    means: dict[str, float] = {}
    for m in metrics:
        arr = np.asarray(scores[m], dtype=float)
        per_query[m] = {qid: float(v) for qid, v in zip(q.keys(), arr)}
        means[m] = float(arr.mean()) if len(arr) else 0.0
    return means, per_query


def per_query_lines(per_query: dict[str, dict[str, float]]) -> str:
    """The per-query table (``query_id`` then one column per metric, tab-separated): every query any metric scored;
    a metric with no value for a query (``context_recall`` of a query without a reference answer) shows ``-``."""
    metrics = list(per_query)
    qids = sorted({q for values in per_query.values() for q in values})
    lines = ["query_id\t" + "\t".join(metrics)]
    for q in qids:
        cells = [f"{per_query[m][q]:.6f}" if q in per_query[m] else "-" for m in metrics]
        lines.append(q + "\t" + "\t".join(cells))
    return "\n".join(lines) + "\n"


def write_trec_run(run: dict, path: str | Path, tag: str = "evolve") -> Path:
    from evolve._io import atomic_write_text

    lines = []
    for qid in sorted(run):
        ranked = sorted(run[qid].items(), key=lambda kv: (-kv[1], kv[0]))
        lines.extend(f"{qid} Q0 {d} {rank} {score:.6f} {tag}" for rank, (d, score) in enumerate(ranked, 1))
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


@dataclass(frozen=True)
class PairedTest:
    """A one-sided paired sign-flip permutation test of ``candidate - champion`` on per-query scores.

    ``p_value = (b + 1) / (n + 1)``: ``n`` permutations (random sign assignments, or all ``2**N - 1`` that differ
    from the observed one when that is fewer), ``b`` of them with a mean difference at least as large as the
    observed one. The observed assignment counts as one more, so ``p`` is never 0.
    """

    mean_difference: float
    p_value: float
    b: int
    n_permutations: int
    seed: int
    exact: bool
    win: int
    tie: int
    loss: int
    n_queries: int


def paired_permutation_test(candidate: dict[str, float], champion: dict[str, float], *, n_permutations: int = 10000,
                            seed: int = 0) -> PairedTest:
    """Is ``candidate`` better than ``champion``? Both map query id -> score on the same queries.

    Uses :func:`scipy.stats.permutation_test` (``permutation_type='samples'``: each query's pair is swapped or not,
    i.e. its difference flips sign; ``alternative='greater'``) and counts ``b`` from its null distribution with
    scipy's own tolerance, so the returned p equals scipy's and ``(b + 1) / (n + 1)``.
    """
    import numpy as np
    from scipy.stats import permutation_test

    if set(candidate) != set(champion):
        raise ValueError("paired_permutation_test: expected scores of the same queries for both configs")
    if n_permutations < 1:
        raise ValueError(f"paired_permutation_test: expected n_permutations >= 1, got {n_permutations}")
    qids = sorted(candidate)
    x = np.asarray([candidate[q] for q in qids], dtype=float)
    y = np.asarray([champion[q] for q in qids], dtype=float)
    diff = x - y
    win, loss = int((diff > 0).sum()), int((diff < 0).sum())
    if not qids:
        raise ValueError("paired_permutation_test: expected at least one query")

    def statistic(a, b, axis=-1):
        return np.mean(a - b, axis=axis)

    res = permutation_test((x, y), statistic, permutation_type="samples", alternative="greater", vectorized=True,
                           n_resamples=n_permutations, rng=np.random.default_rng(seed))
    null = np.asarray(res.null_distribution, dtype=float)
    observed = float(res.statistic)
    tolerance = abs(np.finfo(float).eps * 100 * observed)  # scipy's: numerically equal counts as "as extreme"
    at_least = int(np.count_nonzero(null >= observed - tolerance))
    exact = len(null) < n_permutations or len(null) == 2 ** len(qids)
    if exact:  # scipy enumerated every assignment, the observed one included: leave it out of n and b
        n, b = len(null) - 1, at_least - 1
    else:
        n, b = len(null), at_least
    p = (b + 1) / (n + 1)
    if not np.isclose(p, float(res.pvalue), rtol=1e-12, atol=0):
        raise RuntimeError(f"paired_permutation_test: p = {p} from b = {b}, n = {n} disagrees with scipy's "
                           f"{float(res.pvalue)}")
    return PairedTest(float(diff.mean()), p, b, n, seed, exact, win, len(qids) - win - loss, loss, len(qids))
