"""Fusing a dense and a sparse run with ranx (``ranx.fuse``), and tuning the fusion on labelled queries.

Runs are plain dicts ``{query id: {doc id: score}}``. The dense run always comes first, so ``fusion.weight`` is
the weight of the dense run in ``wsum`` (the sparse run gets ``1 - weight``).

Methods (``fusion.method``):

* ``rrf``: reciprocal rank fusion, ``sum 1 / (rrf_k + rank)``; scores and ``norm`` are ignored.
* ``wsum``: weighted sum of per-query normalised scores (``norm``: ``min-max`` or ``zmuv``), weights
  ``[weight, 1 - weight]``.
* ``mnz``: CombMNZ: sum of normalised scores times the number of runs that retrieved the document.

A query that only one run answers keeps that run's list. ranx is imported on first use.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evolve.config import FusionConfig

__all__ = ["fuse_runs", "optimize_fusion", "ranx_params"]

Run = dict[str, dict[str, float]]


def ranx_params(cfg: FusionConfig) -> tuple[str, str, dict]:
    """``(method, norm, params)`` as ranx names them."""
    if cfg.method == "rrf":
        return "rrf", "min-max", {"k": int(cfg.rrf_k)}
    if cfg.method == "wsum":
        return "wsum", cfg.norm, {"weights": [float(cfg.weight), 1.0 - float(cfg.weight)]}
    if cfg.method == "mnz":
        return "mnz", cfg.norm, {}
    from evolve.errors import ConfigError, did_you_mean

    raise ConfigError(f"fusion.method: expected one of rrf, wsum, mnz, got '{cfg.method}'"
                      f"{did_you_mean(cfg.method, ['rrf', 'wsum', 'mnz'])}")


def _ranx_run(run: Run, qids: list[str]):
    from ranx import Run as RanxRun

    return RanxRun.from_dict({q: {d: float(s) for d, s in run[q].items()} for q in qids})


def _top(docs: dict[str, float], k: int | None) -> dict[str, float]:
    ranked = sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))
    return dict(ranked[:k] if k is not None else ranked)


def fuse_runs(dense: Run, sparse: Run, cfg: FusionConfig, *, k: int | None = None) -> Run:
    """Fuse ``dense`` and ``sparse`` (``ranx.fuse``); each query keeps the best ``k`` of the union (all if None)."""
    method, norm, params = ranx_params(cfg)
    both = sorted(q for q in dense if dense[q] and sparse.get(q))
    out: Run = {}
    if both:
        from ranx import fuse

        with warnings.catch_warnings():  # numba's type-safety notes on first compilation
            warnings.simplefilter("ignore")
            fused = fuse([_ranx_run(dense, both), _ranx_run(sparse, both)], norm=norm, method=method, params=params)
        for q, docs in fused.to_dict().items():
            out[q] = _top({d: float(s) for d, s in docs.items()}, k)
    for q in set(dense) | set(sparse):
        if q not in out:
            out[q] = _top(dense.get(q) or sparse.get(q) or {}, k)
    return out


def optimize_fusion(qrels: dict[str, dict[str, int]], dense: Run, sparse: Run, cfg: FusionConfig, *,
                    metric: str = "ndcg@10") -> FusionConfig:
    """``cfg`` with its fusion parameters tuned on ``qrels`` (``ranx.optimize_fusion``, a grid search).

    The inner loop of ``fusion.optimize: true``: call it with the **tune** queries' qrels and the dense and
    sparse runs of those queries (``Pipeline.dense_run`` / ``Pipeline.sparse_run``), then evaluate the returned
    config on the held-out queries. ``rrf`` tunes ``rrf_k`` (ranx's grid: 5, 10, 20, ..., 100), ``wsum`` tunes
    ``weight`` (steps of 0.1) under ``cfg.norm``, ``mnz`` has nothing to tune and comes back unchanged. Only
    queries that both runs answer and that have judgements take part; with none, ``cfg`` comes back unchanged.
    The returned config keeps ``optimize`` as it was.
    """
    if cfg.method == "mnz":
        return cfg
    method, norm, _ = ranx_params(cfg)
    qids = sorted(q for q in qrels if qrels[q] and dense.get(q) and sparse.get(q))
    if not qids:
        return cfg
    from ranx import Qrels
    from ranx import optimize_fusion as ranx_optimize

    q = Qrels.from_dict({qid: {d: int(r) for d, r in qrels[qid].items()} for qid in qids})
    runs = [_ranx_run(dense, qids), _ranx_run(sparse, qids)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = ranx_optimize(q, runs, norm=norm, method=method, metric=metric, show_progress=False)
    if method == "rrf":
        return cfg.model_copy(update={"rrf_k": int(best["k"])})
    w = float(best["weights"][0]) / max(1e-12, float(sum(best["weights"])))
    return cfg.model_copy(update={"weight": round(w, 6)})
