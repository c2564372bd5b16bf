"""What a warm cheap-axis trial costs at 10k, 100k and 1M chunks (CPU; issue 14, "Scale: one million chunks").

Per size, a synthetic corpus is built once (and resumed when a run was cut short):

* documents of 20-60 words drawn from a Zipfian vocabulary of 50,000 pseudo-words (rank^-1.07), one chunk
  each (``chunking.strategy: none``), so BM25 sees realistic term statistics (a few words in most documents,
  most words in few); 300 queries, each 4-6 of one document's rarer words, judged relevant to it;
* random unit vectors (384-d, like all-MiniLM-L6-v2) for every chunk and query, written THROUGH THE CACHE'S OWN
  API (``EmbeddingCache.embed``) by a registered stand-in embedder, ``scale-standin`` (named as one: it returns
  random vectors, so retrieval quality here is meaningless; the keys are the keys a pipeline computes for those
  texts with that embedder identity);
* the BM25 term statistics (tokenised once), an IVF index (nlist up to 1024) and, up to 100k chunks, the HNSW
  graph (M=16, efConstruction=80), persisted. HNSW at 1M
  chunks is left out: building it takes tens of minutes on two cores.

Then, in a new process per size (a night), real hybrid Pipeline runs of the 300 queries against the cached
vectors: the night's first trial (new process: chunks, cache keys, vectors read once, flat index built, BM25
statistics loaded; the clock is set to a new day, so it also pays the once-a-day recency writes), then warm
trials that change one cheap axis each (fusion method and weight, top-k, BM25 k1/b, index type and HNSW
parameters; IVF and HNSW are persisted at build time). Per trial: wall time, peak RSS (VmHWM, reset before each trial), bytes written (/proc/self/io
write_bytes) and the growth of the cache folder; between sizes, the growth exponent log(t2/t1)/log(n2/n1).

    python benchmarks/scale.py --root /work/wt/scale-bench            # 10k, 100k, 1M (about an hour, first run)
    python benchmarks/scale.py --root /tmp/s --sizes 10000 20000      # a quick look

Targets on a 2-core machine: at 1M chunks a warm trial <= 30 s and <= 6 GB RSS; growth no worse than linear
(exponent <= 1); a fully cached trial writes < 1% of the cache's size. The printout goes to
benchmarks/results/scale.txt.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

from evolve.embedders import Embedder, register_embedder

SIZES = (10_000, 100_000, 1_000_000)
DIM = 384
N_QUERIES = 300
VOCAB = 50_000
HNSW_MAX = 100_000
#: disk per chunk: cache entry (~1.7 KB at 384-d) + BM25 statistics (~0.5 KB) + an HNSW graph (~1.8 KB, <= 100k)
BYTES_PER_CHUNK = 2_300
HNSW_BYTES_PER_CHUNK = 1_900
RESERVE = 1_500_000_000
RESULTS = Path(__file__).resolve().parent / "results" / "scale.txt"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- the stand-in embedder
class StandInEmbedder(Embedder):
    """STAND-IN embedder for this benchmark: random unit vectors (deterministic per block of texts) under a fixed
    identity. It measures the cache, index and pipeline around an embedder, never an embedder."""

    name = "scale-standin"

    def identity(self) -> str:
        return json.dumps({"backend": self.name, "weights": "stand-in-random-unit-vectors-v1", "dim": DIM})

    def embed(self, texts, *, kind="document", progress=None):
        seed = zlib.crc32(texts[0].encode()) ^ len(texts) if texts else 0
        v = np.random.default_rng(seed).standard_normal((len(texts), DIM)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        if progress is not None:
            progress(len(texts))
        return v


register_embedder("scale-standin", f"{__name__}:StandInEmbedder")


def base_config():
    from evolve.config import parse_config

    return parse_config({
        "chunking": {"strategy": "none"},
        "embedding": {"backend": "scale-standin", "model": "scale-standin"},
        "retrieval": {"mode": "hybrid", "top_k": 100},
        "index": {"type": "flat", "hnsw_m": 16, "hnsw_ef_construction": 80, "ivf_nlist": 1024, "ivf_nprobe": 16},
        "sparse": {"tokenizer": "english", "k1": 0.9, "b": 0.4},
        "fusion": {"method": "rrf"},
    })


# --------------------------------------------------------------------------------------------- the synthetic corpus
def pseudo_words(n: int, rng) -> list[str]:
    syll = [c + v for c in "bdfghklmnprstvz" for v in "aeiou"]
    out, seen = [], set()
    while len(out) < n:
        w = "".join(rng.choice(syll, size=int(rng.integers(2, 5))))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def synthetic(n: int, seed: int = 0):
    """``n`` one-chunk documents of Zipfian pseudo-words and 300 queries (4-6 rarer words of one document)."""
    from evolve.datasets import Dataset, Document

    rng = np.random.default_rng(seed)
    vocab = np.array(pseudo_words(VOCAB, rng), dtype=object)
    p = np.arange(1, VOCAB + 1, dtype=np.float64) ** -1.07
    p /= p.sum()
    cdf = np.cumsum(p)
    corpus: dict[str, Document] = {}
    chosen = set(rng.choice(n, size=min(N_QUERIES, n), replace=False).tolist())
    queries, qrels = {}, {}
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        lengths = rng.integers(20, 61, m)
        words = np.searchsorted(cdf, rng.random(int(lengths.sum())))
        words = np.minimum(words, VOCAB - 1)
        ends = np.cumsum(lengths)
        for j in range(m):
            ids = words[ends[j] - lengths[j] : ends[j]]
            i = start + j
            did = f"d{i:07d}"
            corpus[did] = Document(did, "", " ".join(vocab[ids]))
            if i in chosen:
                rare = [int(w) for w in ids if w >= 100] or [int(w) for w in ids]
                pick = rng.choice(rare, size=min(len(rare), int(rng.integers(4, 7))), replace=False)
                qid = f"q{len(queries):04d}"
                queries[qid] = " ".join(vocab[pick])
                qrels[qid] = {did: 1}
    return Dataset(f"synthetic-{n}", "benchmarks/scale.py", corpus, queries, {"test": qrels})


# --------------------------------------------------------------------------------------------- measuring
def write_bytes() -> int:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


class Progress:
    """Logs long steps every 10% (the library asks a factory for a tracker)."""

    def __call__(self, label: str, total: int):
        import contextlib

        @contextlib.contextmanager
        def tracker():
            state = {"done": 0, "next": 0.1}

            def advance(k: int) -> None:
                state["done"] += k
                if total and state["done"] / total >= state["next"]:
                    log(f"  {label}: {state['done']}/{total}")
                    state["next"] += 0.1

            yield advance

        return tracker()


def workspace(root: Path, n: int) -> Path:
    return root / f"n{n}"


def build(root: Path, n: int) -> dict:
    """Fill the cache through its own API, tokenise for BM25, persist HNSW (<= HNSW_MAX). Resumable."""
    from evolve.cache import EmbeddingCache
    from evolve.config import apply_overrides
    from evolve.embedders import EmbedderPool
    from evolve.pipeline import Pipeline

    ws = workspace(root, n)
    t0 = time.perf_counter()
    ds = synthetic(n)
    log(f"build {n}: corpus generated in {time.perf_counter() - t0:.1f}s")
    cache = EmbeddingCache(ws / "cache" / "embeddings.sqlite")
    pool = EmbedderPool()
    cfg = base_config()
    t1 = time.perf_counter()
    pipe = Pipeline(cfg, ds, cache=cache, embedders=pool, progress=Progress())
    pipe.prepare()  # vectors through EmbeddingCache.embed, flat index, BM25 statistics (saved)
    pipe.embed_queries(sorted(ds.queries))
    t_fill = time.perf_counter() - t1
    log(f"build {n}: vectors, flat index and BM25 statistics in {t_fill:.1f}s")
    t2 = time.perf_counter()
    Pipeline(apply_overrides(cfg, ["index.type=ivf"]), ds, cache=cache, embedders=pool).prepare()
    t_ivf = time.perf_counter() - t2
    log(f"build {n}: IVF (nlist up to 1024) built or loaded in {t_ivf:.1f}s")
    t_hnsw = None
    if n <= HNSW_MAX:
        t2 = time.perf_counter()
        Pipeline(apply_overrides(cfg, ["index.type=hnsw"]), ds, cache=cache, embedders=pool).prepare()
        t_hnsw = time.perf_counter() - t2
        log(f"build {n}: HNSW (M=16, efConstruction=80) built or loaded in {t_hnsw:.1f}s")
    cache.close()
    info = {"n": n, "fill_seconds": t_fill, "ivf_seconds": t_ivf, "hnsw_seconds": t_hnsw, "built": time.time()}
    (ws / "built.json").write_text(json.dumps(info))
    return info


TRIALS = [
    ("first trial of the night (new process)", []),
    ("fusion wsum, weight 0.3", ["fusion.method=wsum", "fusion.weight=0.3"]),
    ("fusion mnz", ["fusion.method=mnz"]),
    ("top_k 200", ["retrieval.top_k=200"]),
    ("BM25 k1=1.2 b=0.75 (new k1/b)", ["sparse.k1=1.2", "sparse.b=0.75"]),
    ("index IVF (persisted), nprobe 16", ["index.type=ivf"]),
    ("IVF nprobe 64", ["index.type=ivf", "index.ivf_nprobe=64"]),
    ("index HNSW (persisted)", ["index.type=hnsw"]),
    ("HNSW ef_search 64", ["index.type=hnsw", "index.hnsw_ef_search=64"]),
    ("back to flat, rrf", []),
]


def measure(root: Path, n: int) -> dict:
    from evolve.cache import EmbeddingCache, SQLiteStore
    from evolve.config import apply_overrides
    from evolve.embedders import EmbedderPool
    from evolve.pipeline import evaluate_config

    ws = workspace(root, n)
    t0 = time.perf_counter()
    ds = synthetic(n)
    setup = time.perf_counter() - t0
    db = ws / "cache" / "embeddings.sqlite"
    # the night's first trial happens on a new day: every entry's recency is refreshed once (then never that day)
    import sqlite3

    con = sqlite3.connect(db)
    last_day = con.execute("SELECT COALESCE(MAX(day), 0) FROM touched").fetchone()[0]
    con.close()
    offset = max(0.0, (last_day + 1) * 86_400 + 60 - time.time())
    cache = EmbeddingCache(SQLiteStore(db, clock=lambda: time.time() + offset))
    cache_size = db.stat().st_size
    pool = EmbedderPool()
    cfg = base_config()
    rows = []
    for label, overrides in TRIALS:
        if "HNSW" in label and n > HNSW_MAX:
            rows.append({"label": label, "skipped": f"HNSW left out above {HNSW_MAX} chunks"})
            continue
        trial_cfg = apply_overrides(cfg, overrides)
        reset_peak_rss()
        w0, f0, t = write_bytes(), folder_bytes(ws / "cache"), time.perf_counter()
        ev = evaluate_config(trial_cfg, ds, "test", cache=cache, embedders=pool)
        wall = time.perf_counter() - t
        rows.append({"label": label, "wall": wall, "peak_rss": peak_rss(), "written": write_bytes() - w0,
                     "growth": folder_bytes(ws / "cache") - f0, "n_embedded": ev.cache.n_embedded,
                     "hit_rate": ev.cache.hit_rate, "n_queries": ev.n_queries, "n_chunks": ev.n_chunks})
        log(f"measure {n}: {label:40s} {wall:7.2f}s rss {rows[-1]['peak_rss'] / 2**30:5.2f} GiB "
            f"written {rows[-1]['written'] / 2**20:8.2f} MiB embedded {ev.cache.n_embedded}")
    cache.close()
    return {"n": n, "setup_seconds": setup, "cache_bytes": cache_size, "folder_bytes": folder_bytes(ws / "cache"),
            "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "rows": rows}


# --------------------------------------------------------------------------------------------- the driver
def free_bytes(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free


def needed_bytes(root: Path, sizes) -> int:
    need = RESERVE
    for n in sizes:
        if not (workspace(root, n) / "built.json").exists():
            need += n * BYTES_PER_CHUNK + (n * HNSW_BYTES_PER_CHUNK if n <= HNSW_MAX else 0)
            need -= folder_bytes(workspace(root, n))  # resumed: what is there already counts
    return max(need, RESERVE)


def child(mode: str, root: Path, n: int) -> dict:
    cmd = [sys.executable, __file__, f"--{mode}", str(n), "--root", str(root)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"scale: `{' '.join(cmd)}` failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def exponent(a: float, b: float, na: int, nb: int) -> float:
    return math.log(b / a) / math.log(nb / na) if a > 0 and b > 0 else float("nan")


def report(results: list[dict], builds: dict, wall: float) -> str:
    out = []
    w = out.append
    gib, mib = 2**30, 2**20
    w("")
    w("evolve at scale: warm cheap-axis trials, hybrid (flat or HNSW + BM25 english), 300 queries, 384-d")
    w(f"machine: {os.cpu_count()} CPUs, shared with other work while this ran; stand-in embedder (random vectors)")
    w("=" * 110)
    for r in results:
        n = r["n"]
        b = builds.get(n, {})
        extra = f", IVF build {b['ivf_seconds']:.0f}s" if b.get("ivf_seconds") is not None else ""
        extra += f", HNSW build {b['hnsw_seconds']:.0f}s" if b.get("hnsw_seconds") is not None else ""
        w(f"{n:,} chunks: cache {r['cache_bytes'] / mib:,.0f} MiB (folder {r['folder_bytes'] / mib:,.0f} MiB); "
          f"corpus generated in {r['setup_seconds']:.0f}s; fill (once) {b.get('fill_seconds', float('nan')):.0f}s{extra}")
        w(f"   {'trial':42s} {'wall s':>8s} {'peak RSS':>9s} {'written':>10s} {'% cache':>8s} {'folder +':>10s} "
          f"{'embedded':>8s}")
        for row in r["rows"]:
            if "skipped" in row:
                w(f"   {row['label']:42s} {'-':>8s}  left out: {row['skipped']}")
                continue
            w(f"   {row['label']:42s} {row['wall']:8.2f} {row['peak_rss'] / gib:7.2f}G "
              f"{row['written'] / mib:8.2f}M {100 * row['written'] / r['cache_bytes']:7.3f}% "
              f"{row['growth'] / mib:8.2f}M {row['n_embedded']:8d}")
        w("")
    # summary per size: warm = every measured trial after the first
    w(f"   {'chunks':>10s} {'first s':>8s} {'warm s (median / max)':>22s} {'warm peak RSS':>14s} "
      f"{'warm writes, max % of cache':>28s}")
    summary = []
    for r in results:
        warm = [x for x in r["rows"][1:] if "skipped" not in x]
        first = r["rows"][0]
        sm = {"n": r["n"], "first": first["wall"], "median": float(np.median([x["wall"] for x in warm])),
              "max": max(x["wall"] for x in warm), "rss": max(x["peak_rss"] for x in warm),
              "writes": max(100 * x["written"] / r["cache_bytes"] for x in warm),
              "first_writes": 100 * first["written"] / r["cache_bytes"]}
        summary.append(sm)
        w(f"   {sm['n']:10,d} {sm['first']:8.2f} {sm['median']:10.2f} / {sm['max']:8.2f} {sm['rss'] / gib:12.2f}G "
          f"{sm['writes']:27.3f}%")
    w("")
    exps = []
    for a, b in zip(summary, summary[1:]):
        exps.append(exponent(a["median"], b["median"], a["n"], b["n"]))
        w(f"   growth {a['n']:,} -> {b['n']:,}: warm trial exponent {exps[-1]:.2f}, first trial "
          f"{exponent(a['first'], b['first'], a['n'], b['n']):.2f}, warm peak RSS "
          f"{exponent(a['rss'], b['rss'], a['n'], b['n']):.2f} (1.00 = linear)")
    w("")
    big = [s for s in summary if s["n"] >= 1_000_000]
    if big:
        sm = big[0]
        w(f"   targets at {sm['n']:,} chunks: warm trial {sm['max']:.1f}s (<= 30 s: {'ok' if sm['max'] <= 30 else 'MISSED'}), "
          f"peak RSS {sm['rss'] / gib:.2f} GiB (<= 6 GiB: {'ok' if sm['rss'] <= 6 * gib else 'MISSED'}), "
          f"warm writes {sm['writes']:.3f}% of the cache (< 1%: {'ok' if sm['writes'] < 1 else 'MISSED'}); "
          f"the night's first trial {sm['first']:.1f}s, writing {sm['first_writes']:.2f}% of it (once a day)")
    if exps:
        w(f"   growth no worse than linear: {'ok' if max(exps) <= 1.05 else 'MISSED'} (warm exponents "
          f"{', '.join(f'{e:.2f}' for e in exps)})")
    w(f"   HNSW left out above {HNSW_MAX:,} chunks (its build takes tens of minutes on 2 cores).")
    w(f"   total wall time {wall / 60:.1f} min")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "evolve-scale"),
                    help="where the synthetic workspaces live (kept: a second run resumes from them)")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--out", default=str(RESULTS), help="where the printout goes")
    ap.add_argument("--build", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--measure", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    root = Path(args.root)
    if args.build:
        print(json.dumps(build(root, args.build)), flush=True)
        return 0
    if args.measure:
        print(json.dumps(measure(root, args.measure)), flush=True)
        return 0
    sizes = sorted(set(args.sizes))
    need, free = needed_bytes(root, sizes), free_bytes(root)
    if free < need:
        print(f"scale: refusing to start: {free / 2**20:,.0f} MB free under {root}, about {need / 2**20:,.0f} MB "
              f"needed (cache, BM25 statistics, HNSW graphs, {RESERVE / 2**20:,.0f} MB kept free)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    builds, results = {}, []
    for n in sizes:
        marker = workspace(root, n) / "built.json"
        if marker.exists():
            builds[n] = json.loads(marker.read_text())
            log(f"{n}: built earlier, resumed")
        else:
            log(f"{n}: building (resumes from whatever an earlier run stored)")
            builds[n] = child("build", root, n)
        log(f"{n}: measuring in a new process")
        results.append(child("measure", root, n))
    text = report(results, builds, time.perf_counter() - t0)
    print(text, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text.lstrip("\n") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
