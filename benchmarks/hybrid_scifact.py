"""SciFact: BM25, dense, hybrid (rrf / wsum / mnz) and hybrid + bi-encoder rerank, tuned on train, reported on test.

Every number goes through ``evolve.pipeline.evaluate_config`` with one persistent workspace cache, so vectors and
BM25 indexes are computed once and reused by later runs (and by ``evolve run`` pointed at the same workspace):

    .venv/bin/python benchmarks/hybrid_scifact.py --workspace .evolve-bench            # BM25, dense, hybrids
    .venv/bin/python benchmarks/hybrid_scifact.py --workspace .evolve-bench --rerank 20,50   # + mpnet rerank

Protocol: every parameter (BM25 k1/b, fusion parameters, rerank depth/combine) is chosen on ``train`` (809
queries); ``test`` (300 queries) is only reported: each row prints its test score, but no choice (grid point,
best hybrid, best row) ever reads one. Results: a table on stdout and
``benchmarks/out/hybrid_scifact.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evolve.cache import EmbeddingCache
from evolve.config import parse_config
from evolve.datasets import load_dataset
from evolve.embedders import EmbedderPool
from evolve.pipeline import Pipeline, evaluate_config
from evolve.study import optimize_fusion

ROWS: list[dict] = []


def evaluate(name: str, data: dict, ds, cache, pool, splits=("train", "test")) -> dict:
    cfg = parse_config(data)
    row = {"name": name, "config": data}
    t0 = time.perf_counter()
    for split in splits:
        ev = evaluate_config(cfg, ds, split, cache=cache, embedders=pool)
        row[split] = ev.metrics
        row[f"{split}_latency_ms"] = ev.latency_ms
    row["seconds"] = round(time.perf_counter() - t0, 1)
    ROWS.append(row)
    test = row.get("test", {})
    print(f"{name:<44} train {row['train']['ndcg@10']:.4f}  test {test.get('ndcg@10', float('nan')):.4f}  "
          f"R@100 {test.get('recall@100', float('nan')):.4f}  ({row['seconds']} s)", flush=True)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workspace", default=str(REPO / ".evolve-bench"))
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="dense first-stage model")
    ap.add_argument("--max-length", type=int, default=256, help="dense model's max_length (384 for mpnet)")
    ap.add_argument("--rerank", default="", help="bi-encoder rerank depths to try, e.g. 20,50 (empty: none)")
    ap.add_argument("--rerank-model", default="all-mpnet-base-v2")
    ap.add_argument("--no-dense", action="store_true", help="BM25 rows only")
    args = ap.parse_args(argv)

    ds = load_dataset(args.dataset)
    cache = EmbeddingCache(Path(args.workspace) / "cache" / "embeddings.sqlite")
    pool = EmbedderPool()
    sparse = {"retrieval": {"mode": "sparse"}}

    # --- BM25
    tag = "" if args.model == "all-MiniLM-L6-v2" else f"-{args.model}"
    args.out = REPO / "benchmarks" / "out" / f"hybrid_scifact{tag}.json"
    evaluate("bm25 english k1=0.9 b=0.4", {**sparse, "sparse": {"tokenizer": "english", "k1": 0.9, "b": 0.4}}, ds, cache, pool)
    best_sparse, best = {"tokenizer": "english", "k1": 0.9, "b": 0.4}, -1.0
    for k1 in (0.6, 0.9, 1.2, 1.5):
        for b in (0.3, 0.4, 0.6, 0.75):
            ev = evaluate_config(parse_config({**sparse, "sparse": {"k1": k1, "b": b}}), ds, "train", cache=cache, embedders=pool)
            if ev.metrics["ndcg@10"] > best:
                best, best_sparse = ev.metrics["ndcg@10"], {"tokenizer": "english", "k1": k1, "b": b}
    evaluate(f"bm25 tuned on train k1={best_sparse['k1']} b={best_sparse['b']}", {**sparse, "sparse": best_sparse}, ds, cache, pool)
    if args.no_dense:
        return _finish(args)

    # --- dense
    emb = {"model": args.model, "max_length": args.max_length}
    evaluate(f"dense {args.model}", {"retrieval": {"mode": "dense"}, "embedding": emb}, ds, cache, pool)

    # --- hybrids: fusion parameters tuned on train (evolve.study.optimize_fusion over the train runs)
    hybrid = {"retrieval": {"mode": "hybrid"}, "embedding": emb, "sparse": best_sparse}
    pipe = Pipeline(parse_config(hybrid), ds, cache=cache, embedders=pool).prepare()
    train = ds.split_qrels("train")
    qids = sorted(q for q in train if q in ds.queries)
    pipe.embed_queries(qids)
    dense_run, sparse_run = pipe.dense_run(qids), pipe.sparse_run(qids)
    fused_rows = []
    for fusion in ({"method": "rrf"}, {"method": "wsum", "norm": "min-max"}, {"method": "wsum", "norm": "zmuv"},
                   {"method": "mnz", "norm": "min-max"}):
        base = parse_config({**hybrid, "fusion": fusion}).fusion
        tuned = optimize_fusion(train, dense_run, sparse_run, base).model_dump(mode="json")
        tuned.pop("optimize")
        label = {"rrf": f"rrf k={tuned['rrf_k']}", "wsum": f"wsum {tuned['norm']} w={tuned['weight']:.2f}",
                 "mnz": f"mnz {tuned['norm']}"}[tuned["method"]]
        fused_rows.append(evaluate(f"hybrid {label}", {**hybrid, "fusion": tuned}, ds, cache, pool))
    evaluate("hybrid rrf k=60 (untuned)", {**hybrid, "fusion": {"method": "rrf", "rrf_k": 60}}, ds, cache, pool)
    best_hybrid = max(fused_rows, key=lambda r: r["train"]["ndcg@10"])
    print(f"best hybrid on train: {best_hybrid['name']}", flush=True)

    # --- hybrid + bi-encoder rerank of the head
    for depth in [int(d) for d in args.rerank.split(",") if d.strip()]:
        for combine, weight in (("replace", 0.5), ("fuse", 0.5), ("fuse", 0.7)):
            rr = {"transport": "bi-encoder", "model": args.rerank_model, "depth": depth, "combine": combine,
                  "weight": weight, "max_length": 384}
            evaluate(f"{best_hybrid['name']} + {args.rerank_model} d={depth} {combine}"
                     + (f" w={weight}" if combine == "fuse" else ""), {**best_hybrid["config"], "rerank": rr}, ds, cache, pool)
    pool.close()
    return _finish(args)


def _finish(args) -> int:
    out = args.out
    from evolve._io import atomic_write_json

    atomic_write_json(out, {"dataset": args.dataset, "rows": ROWS})
    best = max(ROWS, key=lambda r: r["train"]["ndcg@10"])
    print(f"\nbest on train: {best['name']}  train {best['train']['ndcg@10']:.4f}  test {best['test']['ndcg@10']:.4f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
