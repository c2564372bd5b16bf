"""Fusing a dense and a sparse run (a pipeline stage: it never scores; tuning the fusion on labelled queries is
the loop's, :func:`evolve.study.optimize_fusion`).

Runs are plain dicts ``{query id: {doc id: score}}``. The dense run always comes first, so ``fusion.weight`` is
the weight of the dense run in ``wsum`` (the sparse run gets ``1 - weight``).

Methods (``fusion.method``):

* ``rrf``: reciprocal rank fusion, ``sum 1 / (rrf_k + rank)`` over the runs that retrieved the document
  (``ranx.fuse``); scores and ``norm`` are ignored.
* ``wsum``: ``weight * dense + (1 - weight) * sparse`` of per-query normalised scores (``norm``: ``min-max`` or
  ``zmuv``). A document that one run did not retrieve counts at **that run's minimum** normalised score for
  that query (0 under min-max, the run's lowest z-score under zmuv): not retrieving a document is never better
  than retrieving it last. (ranx's ``wsum`` counts a missing document as 0, which under zmuv is the run's
  *mean*: better than half of what the run did retrieve.)
* ``mnz``: CombMNZ, ``(sum of the min-max scores of the runs that retrieved the document) * (how many did)``.
  Only over min-max scores, which are never negative, so a second run that finds the document never lowers
  it; ``norm: zmuv`` is refused by the config (a z-score below the mean is negative, and multiplying a negative
  sum by the hit count pushes a document that both retrievers found *down*).

Normalisation, per query and per run, over the documents that run retrieved: min-max is
``(s - min) / max(max - min, 1e-9)``, zmuv is ``(s - mean) / max(std, 1e-9)`` (population std), the same
formulas as ranx's, so ``wsum`` min-max and ``mnz`` min-max give exactly ranx's scores. A run whose scores are
all equal normalises to 0 everywhere (no ranking information; its documents count as found for ``mnz``).

A query that only one run answers keeps that run's list (raw scores). ranx is imported on first use.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from evolve.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from evolve.config import FusionConfig

__all__ = ["METHODS", "NORMS", "check_fusion", "fuse_runs", "normalise"]

Run = dict[str, dict[str, float]]

METHODS = ("rrf", "wsum", "mnz")
NORMS = ("min-max", "zmuv")


def check_fusion(cfg: FusionConfig) -> None:
    """One-line errors for a combination the config validator would refuse (``model_copy`` skips validation)."""
    if cfg.method not in METHODS:
        raise ConfigError(f"fusion.method: expected one of {', '.join(METHODS)}, got '{cfg.method}'"
                          f"{did_you_mean(cfg.method, METHODS)}")
    if cfg.norm not in NORMS:
        raise ConfigError(f"fusion.norm: expected one of {', '.join(NORMS)}, got '{cfg.norm}'{did_you_mean(cfg.norm, NORMS)}")
    if cfg.method == "mnz" and cfg.norm != "min-max":
        raise ConfigError(f"fusion.norm: expected min-max for fusion.method 'mnz' (CombMNZ multiplies by the hit "
                          f"count, so its scores must not be negative), got '{cfg.norm}'")


def normalise(docs: dict[str, float], norm: str) -> tuple[dict[str, float], float]:
    """``(normalised scores, floor)`` of one query's list: ``floor`` is the lowest normalised score, the value a
    document missing from this list counts at in ``wsum``."""
    if not docs:
        return {}, 0.0
    ids = list(docs)
    s = np.fromiter((float(docs[d]) for d in ids), dtype=np.float64, count=len(ids))
    if norm == "min-max":
        lo = float(s.min())
        z = (s - lo) / max(float(s.max()) - lo, 1e-9)
    elif norm == "zmuv":
        z = (s - float(s.mean())) / max(float(s.std()), 1e-9)
    else:
        raise ConfigError(f"fusion.norm: expected one of {', '.join(NORMS)}, got '{norm}'{did_you_mean(norm, NORMS)}")
    return dict(zip(ids, z.tolist())), float(z.min())


def _wsum(nd: tuple[dict[str, float], float], ns: tuple[dict[str, float], float], weight: float) -> dict[str, float]:
    (d_scores, d_floor), (s_scores, s_floor) = nd, ns
    w = float(weight)
    return {d: w * d_scores.get(d, d_floor) + (1.0 - w) * s_scores.get(d, s_floor)
            for d in dict.fromkeys([*d_scores, *s_scores])}


def _mnz(d_scores: dict[str, float], s_scores: dict[str, float]) -> dict[str, float]:
    return {d: (d_scores.get(d, 0.0) + s_scores.get(d, 0.0)) * ((d in d_scores) + (d in s_scores))
            for d in dict.fromkeys([*d_scores, *s_scores])}


def _ranx_run(run: Run, qids: list[str]):
    from ranx import Run as RanxRun

    return RanxRun.from_dict({q: {d: float(s) for d, s in run[q].items()} for q in qids})


def _top(docs: dict[str, float], k: int | None) -> dict[str, float]:
    ranked = sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))
    return dict(ranked[:k] if k is not None else ranked)


def _rrf(dense: Run, sparse: Run, qids: list[str], rrf_k: int) -> Run:
    from ranx import fuse

    with warnings.catch_warnings():  # numba's type-safety notes on first compilation
        warnings.simplefilter("ignore")
        fused = fuse([_ranx_run(dense, qids), _ranx_run(sparse, qids)], norm=None, method="rrf",
                     params={"k": int(rrf_k)})
    return {q: {d: float(s) for d, s in docs.items()} for q, docs in fused.to_dict().items()}


def fuse_runs(dense: Run, sparse: Run, cfg: FusionConfig, *, k: int | None = None) -> Run:
    """Fuse ``dense`` and ``sparse`` by ``cfg``; each query keeps the best ``k`` of the union (all if None).

    Ties are broken by document id, so the result does not depend on dict order.
    """
    check_fusion(cfg)
    both = sorted(q for q in dense if dense[q] and sparse.get(q))
    out: Run = {}
    if both and cfg.method == "rrf":
        out = {q: _top(docs, k) for q, docs in _rrf(dense, sparse, both, cfg.rrf_k).items()}
    for q in both:
        if cfg.method == "wsum":
            out[q] = _top(_wsum(normalise(dense[q], cfg.norm), normalise(sparse[q], cfg.norm), cfg.weight), k)
        elif cfg.method == "mnz":
            out[q] = _top(_mnz(normalise(dense[q], "min-max")[0], normalise(sparse[q], "min-max")[0]), k)
    for q in set(dense) | set(sparse):
        if q not in out:
            out[q] = _top(dense.get(q) or sparse.get(q) or {}, k)
    return out
