"""What a trial costs with and without the embedding cache (CPU, all-MiniLM-L6-v2, SciFact).

Part A, full SciFact (bundled): a cold evaluation in a new empty workspace (model load included) against warm
ones that change only the index (HNSW) or top_k, and against a fully cached ``evolve eval`` run as a new process
(wall time, interpreter start included). Then 1% of the documents are edited and the next evaluation must embed
exactly those documents.

Part B, a fixed 1,000-document subset with its test queries: the fixed walk of 20 evaluations below (16 change only
cheap settings, 4 change the chunking), run in two arms side by side (each step in both, the first arm alternating): with the cache (one fresh workspace
for the walk) and without it (``EmbeddingCache(None)``, every index built anew). Reports the total embedding time of
each arm (sum of ``embed_seconds``), its texts per second, and the ratio.

    python benchmarks/trial_cost.py            # the full benchmark (34 minutes on an idle 2-core CPU)
    python benchmarks/trial_cost.py --quick    # smoke test: 300-document subsets, the first 8 steps of the walk

Targets: warm / cold <= 5%; cached new process / cold <= 10%; walk embedding time without / with cache >= 3x.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from evolve.cache import EmbeddingCache
from evolve.config import PipelineConfig, apply_overrides
from evolve.datasets import Dataset, Document, load_dataset
from evolve.embedders import EmbedderPool
from evolve.index import _INDEXES, clear_index_cache
from evolve.pipeline import evaluate_config
from evolve.workspace import Workspace

#: The walk: each step's overrides are applied on top of the previous step's config (the first on the default).
#: "chunking" steps change how documents are cut (new chunk texts to embed); "cheap" steps change only index
#: type/parameters, top_k, aggregation or the truncated dimension (everything is served from the cache).
WALK: list[tuple[str, list[str]]] = [
    ("chunking", ["chunking.strategy=tokens", "chunking.size=256", "chunking.overlap=32"]),
    ("cheap", ["index.type=hnsw"]),
    ("cheap", ["retrieval.top_k=200"]),
    ("cheap", ["retrieval.aggregation=mean"]),
    ("cheap", ["embedding.dim=256"]),
    ("chunking", ["chunking.strategy=sentences", "chunking.size=128", "chunking.overlap=0"]),
    ("cheap", ["index.type=ivf"]),
    ("cheap", ["index.ivf_nprobe=16"]),
    ("cheap", ["retrieval.aggregation=sum"]),
    ("cheap", ["embedding.dim=128"]),
    ("chunking", ["chunking.strategy=recursive", "chunking.size=192", "chunking.overlap=32"]),
    ("cheap", ["index.type=flat"]),
    ("cheap", ["retrieval.top_k=100"]),
    ("cheap", ["index.type=hnsw", "index.hnsw_ef_search=256"]),
    ("cheap", ["embedding.dim=null"]),
    ("chunking", ["chunking.strategy=none", "chunking.overlap=0"]),
    ("cheap", ["retrieval.aggregation=max"]),
    ("cheap", ["index.type=ivf", "index.ivf_nlist=16"]),
    ("cheap", ["embedding.dim=64"]),
    ("cheap", ["retrieval.top_k=500"]),
]
assert len(WALK) == 20 and sum(kind == "cheap" for kind, _ in WALK) == 16


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed_eval(cfg, ds, cache, pool):
    t0 = time.perf_counter()
    ev = evaluate_config(cfg, ds, "test", cache=cache, embedders=pool)
    return ev, time.perf_counter() - t0


def evolve_exe() -> list[str]:
    exe = Path(sys.executable).with_name("evolve")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "evolve"]


def part_a(scifact: Dataset, root: Path, n_docs: int | None) -> dict:
    ds = scifact.subset(n_docs, "test") if n_docs else scifact
    label = f"SciFact[{n_docs}]" if n_docs else "SciFact (full)"
    ws = Workspace(root / "part-a").ensure()
    cfg = PipelineConfig()
    clear_index_cache()

    log(f"A: cold evaluation on {label} ({len(ds.corpus)} docs, {len(ds.qrels['test'])} queries), new workspace")
    pool = EmbedderPool()  # a new pool: the model load is part of the cold trial
    cache = EmbeddingCache(ws.cache_path)
    cold, t_cold = timed_eval(cfg, ds, cache, pool)
    log(f"A: cold {t_cold:.1f}s, embedded {cold.cache.n_embedded}")
    warm = {}
    for name, overrides in (("index=hnsw", ["index.type=hnsw"]), ("top_k=200", ["retrieval.top_k=200"])):
        ev, t = timed_eval(apply_overrides(cfg, overrides), ds, cache, pool)
        warm[name] = (ev, t)
        log(f"A: warm {name} {t:.2f}s, embedded {ev.cache.n_embedded}")
    cache.close()
    pool.close()

    cmd = [*evolve_exe(), "eval", "--dataset", "scifact", "--split", "test", "--json", "--workspace", str(ws.path)]
    if n_docs:
        cmd += ["--subset", str(n_docs)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    t_proc = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"fully cached `evolve eval` failed:\n{proc.stderr}")
    proc_summary = json.loads(proc.stdout.strip().splitlines()[-1])
    log(f"A: fully cached new process {t_proc:.1f}s, embedded {proc_summary['n_embedded']}")

    # incremental night: edit 1% of the documents; the next evaluation embeds exactly those
    ids = sorted(ds.corpus)
    edited_ids = ids[:: 100]
    corpus = dict(ds.corpus)
    for d in edited_ids:
        doc = corpus[d]
        corpus[d] = Document(doc.id, doc.title, doc.text + " (revised)")
    edited = Dataset(ds.name, ds.source, corpus, ds.queries, ds.qrels)
    pool = EmbedderPool()
    cache = EmbeddingCache(ws.cache_path)
    inc, t_inc = timed_eval(cfg, edited, cache, pool)
    cache.close()
    pool.close()
    log(f"A: 1% edited ({len(edited_ids)} docs): embedded {inc.cache.n_embedded} in {t_inc:.1f}s")

    return {
        "label": label,
        "n_docs": len(ds.corpus),
        "n_queries": cold.n_queries,
        "cold": (t_cold, cold),
        "warm": warm,
        "process": (t_proc, proc_summary),
        "incremental": (t_inc, inc, len(edited_ids)),
    }


def part_b(scifact: Dataset, root: Path, n_docs: int, n_steps: int) -> dict:
    """Both arms walk side by side: every step runs in each arm, the arm that goes first alternating from step to
    step, so that a change in the machine's load falls on both arms alike rather than on whichever ran later."""
    steps = WALK[:n_steps]
    ds = scifact.subset(n_docs, "test")
    pool = EmbedderPool()
    # load the model before either arm, so neither pays for it in embed_seconds
    warmup = pool.get(PipelineConfig().embedding)
    warmup.embed(["warm-up"])
    clear_index_cache()

    caches = {"cache": EmbeddingCache(Workspace(root / "part-b").ensure().cache_path), "no cache": EmbeddingCache(None)}
    rows: dict[str, list[dict]] = {arm: [] for arm in caches}
    wall = dict.fromkeys(caches, 0.0)
    cfg = PipelineConfig()
    for i, (kind, overrides) in enumerate(steps, 1):
        cfg = apply_overrides(cfg, overrides)
        order = ("cache", "no cache") if i % 2 else ("no cache", "cache")
        for arm in order:
            # the no-cache arm builds every index anew; the cache arm keeps the indexes it built (the cache's
            # in-process index reuse), which the no-cache arm's steps leave untouched
            if arm == "cache":
                ev, t = timed_eval(cfg, ds, caches[arm], pool)
            else:
                kept = _INDEXES.snapshot()
                clear_index_cache()
                ev, t = timed_eval(cfg, ds, caches[arm], pool)
                clear_index_cache()
                _INDEXES.restore(kept)
            wall[arm] += t
            rows[arm].append({"step": i, "kind": kind, "change": " ".join(overrides), "n_chunks": ev.n_chunks,
                              "n_embedded": ev.cache.n_embedded, "embed_seconds": ev.cache.embed_seconds,
                              "wall": t, "ndcg@10": ev.metrics["ndcg@10"]})
            log(f"B[{arm:8s}] step {i:2d} {kind:8s} {' '.join(overrides):60s} chunks {ev.n_chunks:5d} "
                f"embedded {ev.cache.n_embedded:5d} embed {ev.cache.embed_seconds:7.1f}s wall {t:7.1f}s "
                f"ndcg@10 {ev.metrics['ndcg@10']:.4f}")
    for cache in caches.values():
        cache.close()
    pool.close()
    arms = {arm: {"rows": rows[arm], "wall": wall[arm]} for arm in caches}
    return {"n_docs": len(ds.corpus), "n_queries": len(ds.qrels["test"]), "steps": len(steps), "arms": arms}


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def report(a: dict, b: dict, total: float, quick: bool) -> str:
    out = []
    w = out.append
    w("")
    w(f"evolve trial cost — CPU, all-MiniLM-L6-v2{' (--quick)' if quick else ''}")
    w("=" * 96)
    t_cold, cold = a["cold"]
    w(f"A. {a['label']}: {a['n_docs']} documents, {a['n_queries']} test queries; ndcg@10 {cold.metrics['ndcg@10']:.4f}")
    w(f"   {'trial':44s} {'seconds':>9s} {'embedded':>9s} {'vs cold':>9s} {'target':>8s}")
    w(f"   {'cold (new workspace, model load included)':44s} {t_cold:9.2f} {cold.cache.n_embedded:9d} {'1.000':>9s}")
    for name, (ev, t) in a["warm"].items():
        ok = "ok" if t / t_cold <= 0.05 else "MISSED"
        w(f"   {'warm, only ' + name:44s} {t:9.2f} {ev.cache.n_embedded:9d} {ratio(t, t_cold):>9s} {'<= 0.05':>8s} {ok}")
    t_proc, summ = a["process"]
    ok = "ok" if t_proc / t_cold <= 0.10 else "MISSED"
    w(f"   {'fully cached `evolve eval`, new process':44s} {t_proc:9.2f} {summ['n_embedded']:9d} "
      f"{ratio(t_proc, t_cold):>9s} {'<= 0.10':>8s} {ok}")
    t_inc, inc, n_edit = a["incremental"]
    ok = "ok" if inc.cache.n_embedded == n_edit else "MISMATCH"
    w(f"   {f'1% of documents edited ({n_edit}), new process state':44s} {t_inc:9.2f} {inc.cache.n_embedded:9d} "
      f"{ratio(t_inc, t_cold):>9s} {'=' + str(n_edit) + ' emb':>8s} {ok}")
    w("")
    arms = b["arms"]
    w(f"B. walk of {b['steps']} evaluations on SciFact[{b['n_docs']}] ({b['n_queries']} test queries)")
    w(f"   {'step':>4s} {'kind':8s} {'change':58s} {'chunks':>6s} {'emb(c)':>7s} {'s(c)':>7s} {'s(no c)':>8s} {'ndcg@10':>8s}")
    for rc, rn in zip(arms["cache"]["rows"], arms["no cache"]["rows"]):
        same = "" if abs(rc["ndcg@10"] - rn["ndcg@10"]) < 1e-6 else f" (no cache: {rn['ndcg@10']:.4f})"
        w(f"   {rc['step']:4d} {rc['kind']:8s} {rc['change'][:58]:58s} {rc['n_chunks']:6d} {rc['n_embedded']:7d} "
          f"{rc['embed_seconds']:7.1f} {rn['embed_seconds']:8.1f} {rc['ndcg@10']:8.4f}{same}")
    e_c = sum(r["embed_seconds"] for r in arms["cache"]["rows"])
    e_n = sum(r["embed_seconds"] for r in arms["no cache"]["rows"])
    n_c = sum(r["n_embedded"] for r in arms["cache"]["rows"])
    n_n = sum(r["n_embedded"] for r in arms["no cache"]["rows"])
    w(f"   {'':4s} {'arm':8s} {'texts embedded':>20s} {'embed seconds':>14s} {'texts/s':>9s} {'wall seconds':>13s}")
    w(f"   {'':4s} {'cache':8s} {n_c:20d} {e_c:14.1f} {n_c / e_c if e_c else 0:9.1f} {arms['cache']['wall']:13.1f}")
    w(f"   {'':4s} {'no cache':8s} {n_n:20d} {e_n:14.1f} {n_n / e_n if e_n else 0:9.1f} "
      f"{arms['no cache']['wall']:13.1f}")
    ok = "ok" if e_c and e_n / e_c >= 3 else "MISSED"
    w(f"   embedding time, no cache / cache: {e_n / e_c if e_c else float('inf'):.2f}x (target >= 3x) {ok}; "
      f"wall: {arms['no cache']['wall'] / arms['cache']['wall']:.2f}x")
    w("")
    w(f"total benchmark wall time {total / 60:.1f} min")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="300-document subsets and an 8-step walk (smoke test)")
    ap.add_argument("--keep", metavar="DIR", help="keep the workspaces under DIR (default: a temporary folder)")
    ap.add_argument("--full-docs", type=int, default=None, help=argparse.SUPPRESS)  # part A on a subset (testing)
    ap.add_argument("--walk-docs", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    full_docs = args.full_docs or (300 if args.quick else None)
    walk_docs = args.walk_docs or (300 if args.quick else 1000)
    steps = args.steps or (8 if args.quick else len(WALK))
    t0 = time.perf_counter()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="evolve-trial-cost-"))
    try:
        scifact = load_dataset("scifact")
        a = part_a(scifact, root, full_docs)
        b = part_b(scifact, root, walk_docs, steps)
        print(report(a, b, time.perf_counter() - t0, args.quick), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
