"""``fusion.optimize``: the loop tunes a trial's fusion parameters on its tune queries.

Tuning scores runs against judgements, so it belongs to the loop, not to the fusion stage
(:mod:`evolve.fusion` only fuses; this module fuses with it and scores with :mod:`evolve.evaluate`).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from evolve.fusion import check_fusion, fuse_runs

if TYPE_CHECKING:
    from evolve.config import FusionConfig

__all__ = ["WEIGHT_GRID", "optimize_fusion"]

Run = dict[str, dict[str, float]]

#: dense weights tried for wsum (ranx's grid: steps of 0.1)
WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))


def optimize_fusion(qrels: dict[str, dict[str, int]], dense: Run, sparse: Run, cfg: FusionConfig, *,
                    metric: str = "ndcg@10", k: int | None = None) -> FusionConfig:
    """``cfg`` with its fusion parameters tuned on ``qrels`` (a grid search).

    The inner loop of ``fusion.optimize: true``: call it with the **tune** queries' qrels and the dense and
    sparse runs of those queries (``Pipeline.dense_run`` / ``Pipeline.sparse_run``), then evaluate the returned
    config on the held-out queries. ``rrf`` tunes ``rrf_k`` (``ranx.optimize_fusion``'s grid 10, 20, ..., 100,
    over ranx's rrf, which :func:`~evolve.fusion.fuse_runs` uses too); ``wsum`` tunes ``weight`` over 0.0, 0.1,
    ..., 1.0 under ``cfg.norm``, scoring each weight with :func:`~evolve.fusion.fuse_runs` itself (missing
    documents at the run's minimum), so the weight is tuned for the fusion that runs; on a tie the larger dense
    weight wins (ranx's rule). ``mnz`` has nothing to tune and comes back unchanged. ``k`` truncates each fused
    list as the pipeline does (``retrieval.top_k``). Only queries that both runs answer and that have judgements
    take part; with none, ``cfg`` comes back unchanged. The returned config keeps ``optimize`` as it was.
    """
    check_fusion(cfg)
    if cfg.method == "mnz":
        return cfg
    qids = sorted(q for q in qrels if qrels[q] and dense.get(q) and sparse.get(q))
    if not qids:
        return cfg
    judged = {q: qrels[q] for q in qids}
    if cfg.method == "rrf":
        from ranx import Qrels
        from ranx import Run as RanxRun
        from ranx import optimize_fusion as ranx_optimize

        def ranx_run(run: Run):
            return RanxRun.from_dict({q: {d: float(s) for d, s in run[q].items()} for q in qids})

        q = Qrels.from_dict({qid: {d: int(r) for d, r in judged[qid].items()} for qid in qids})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            best = ranx_optimize(q, [ranx_run(dense), ranx_run(sparse)], norm=None, method="rrf",
                                 metric=metric, show_progress=False)
        return cfg.model_copy(update={"rrf_k": int(best["k"])})
    from evolve.evaluate import evaluate_run

    d_sub, s_sub = {q: dense[q] for q in qids}, {q: sparse[q] for q in qids}
    best_w, best_score = float(cfg.weight), -1.0
    for w in WEIGHT_GRID:
        run = fuse_runs(d_sub, s_sub, cfg.model_copy(update={"weight": w}), k=k)
        score = evaluate_run(judged, run, [metric])[0][metric]
        if score >= best_score:
            best_w, best_score = w, score
    return cfg.model_copy(update={"weight": best_w})
