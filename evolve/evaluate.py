"""Scoring with ranx: metrics, per-query scores, TREC run files, paired significance tests."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "DEFAULT_METRICS",
    "PRIMARY_METRIC",
    "evaluate_run",
    "mlflow_name",
    "write_trec_run",
    "compare_runs",
]

PRIMARY_METRIC = "ndcg@10"
DEFAULT_METRICS = ["ndcg@10", "recall@100", "mrr@10", "map@100"]


def mlflow_name(metric: str) -> str:
    """``ndcg@10`` -> ``ndcg_at_10`` (MLflow-safe)."""
    return metric.replace("@", "_at_").replace("-", "_")


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


def write_trec_run(run: dict, path: str | Path, tag: str = "evolve") -> Path:
    from evolve._io import atomic_write_text

    lines = []
    for qid in sorted(run):
        ranked = sorted(run[qid].items(), key=lambda kv: (-kv[1], kv[0]))
        lines.extend(f"{qid} Q0 {d} {rank} {score:.6f} {tag}" for rank, (d, score) in enumerate(ranked, 1))
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def compare_runs(qrels: dict, runs: dict[str, dict], metric: str = PRIMARY_METRIC, *, max_p: float = 0.05,
                 n_permutations: int = 10000, seed: int = 42) -> dict:
    """Paired comparison of named runs on ``qrels`` with ranx ``compare`` (Fisher's randomization test).

    Returns ``{name: mean}``, the p-value of the first two, and win/tie/loss counts of the second vs the first.
    """
    from ranx import compare

    names = list(runs)
    if len(names) != 2:
        raise ValueError("compare_runs needs exactly two runs: baseline first, candidate second")
    qids = sorted(qrels)
    q, _ = _ranx({k: qrels[k] for k in qids}, {qids[0]: {"x": 1.0}})
    ranx_runs = []
    for name in names:
        docs = {qid: (runs[name].get(qid) or {"__none__": 0.0}) for qid in qids}
        _, r = _ranx({k: qrels[k] for k in qids}, docs)
        r.name = name
        ranx_runs.append(r)
    report = compare(q, ranx_runs, metrics=[metric], stat_test="fisher", max_p=max_p,
                     n_permutations=n_permutations, random_seed=seed, make_comparable=True)
    means = {name: float(report.results[name][metric]) for name in names}
    p = float(report.comparisons[names[1], names[0]][metric]["p_value"])
    wtl = report.win_tie_loss[(names[1], names[0])][metric]
    return {"means": means, "p_value": p, "win": int(wtl["W"]), "tie": int(wtl["T"]), "loss": int(wtl["L"])}
