"""Trials per hour with 1 vs 2 ``evolve worker`` processes on one study (PostgreSQL storage, MLflow server).

Each arm is a fresh study in a fresh PostgreSQL database, run by N workers that each start on a copy of one warm
embedding cache (a tiny dense space on a 120-document SciFact subset), so a trial measures the loop
(sampling, retrieval, ranx, MLflow logging), not the embedder. The loop time of an arm is from the first
trial's start to the last trial's end as Optuna recorded them (worker start-up, about 10-20 s of imports, is
reported apart).

    python benchmarks/workers.py                      # 16 trials per arm, writes benchmarks/out/workers.txt
    python benchmarks/workers.py --trials 8 --arms 1,2,3

Needs PostgreSQL (default postgresql://root@127.0.0.1:5432/postgres, trust auth; a password comes from
PGPASSWORD or a passfile) to create and drop its throwaway databases.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
EVOLVE = str(Path(sys.executable).with_name("evolve"))

#: tests/data/space_small.yaml plus top_k: 54 parameter sets, so that 16 TPE trials rarely
#: repeat one (a repeat is answered from the earlier result and would flatter the throughput).
SPACE = """\
base: default
params:
  chunking.strategy: {choices: [none, tokens]}
  chunking.size: {choices: [128], when: {chunking.strategy: [tokens]}}
  chunking.overlap: {choices: [16], when: {chunking.strategy: [tokens]}}
  retrieval.aggregation: {choices: [max, sum], when: {chunking.strategy: [tokens]}}
  index.type: {choices: [flat, hnsw]}
  embedding.dim: {choices: [384, 256, 128]}
  retrieval.top_k: {choices: [100, 200, 300]}
"""


def warm_cache(path: Path, subset: int) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    script = textwrap.dedent(f"""
        from evolve.cache import EmbeddingCache
        from evolve.config import load_config
        from evolve.datasets import load_dataset
        from evolve.embedders import EmbedderPool
        from evolve.pipeline import Pipeline

        ds = load_dataset("scifact").subset({subset}, None)
        cache, pool = EmbeddingCache({str(path) + '.tmp'!r}), EmbedderPool()
        for overrides in ([], ["chunking.strategy=tokens", "chunking.size=128", "chunking.overlap=16"]):
            pipe = Pipeline(load_config(None, overrides), ds, cache=cache, embedders=pool)
            pipe.prepare()
            pipe.embed_queries(sorted(ds.queries))
        pool.close()
        cache.close()
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    os.replace(str(path) + ".tmp", path)


def run_arm(n: int, *, trials: int, subset: int, space: Path, warm: Path, root: Path, admin, pg: str,
            tracking: str) -> dict:
    import optuna
    from optuna.trial import TrialState

    from evolve.cli._common import study_options
    from evolve.study import load_study_dataset, prepare_study

    db = f"evolve_bench_{secrets.token_hex(4)}"
    admin.execute(f"CREATE DATABASE {db}")
    storage = f"postgresql+psycopg://{pg}/{db}"
    ws = root / f"ws-{n}"
    shutil.rmtree(ws, ignore_errors=True)
    (ws / "cache").mkdir(parents=True)
    shutil.copy(warm, ws / "cache" / "embeddings.sqlite")
    name = f"bench-{n}w-{db[-8:]}"
    try:
        opts = study_options(dataset_spec="scifact", n_trials=None, timeout=None, seed=None, search_space=str(space),
                        overrides=None, objectives=None, split_seed=0, prune=False, subset=subset,
                        heartbeat_interval=10, grace_period=60, workspace=str(ws), study_name=name,
                        storage_url=storage, tracking_uri=None)
        st_storage, _, _ = prepare_study(opts, load_study_dataset(opts))
        st_storage.engine.dispose()
        args = ["worker", "--dataset", "scifact", "--subset", str(subset), "--search-space", str(space),
                "--no-prune", "--workspace", str(ws), "--study", name, "--trials", str(trials)]
        env = {**os.environ, "EVOLVE_STORAGE": storage, "EVOLVE_TRACKING_URI": tracking}
        t0 = time.time()
        procs = [subprocess.Popen([EVOLVE, *args, "--seed", str(i)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(root / f"worker-{n}-{i}.log", "w")) for i in range(n)]
        codes = [p.wait() for p in procs]
        wall = time.time() - t0
        if any(codes):
            raise SystemExit(f"{n}-worker arm: exit codes {codes}; see {root}/worker-{n}-*.log")
        study = optuna.load_study(study_name=name, storage=storage)
        done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        first = min(t.datetime_start for t in done).timestamp()
        last = max(t.datetime_complete for t in done).timestamp()
        loop = last - first
        repeats = sum("evolve.repeat_of" in t.user_attrs for t in done)
        durations = [t.duration.total_seconds() for t in done if "evolve.repeat_of" not in t.user_attrs]
        study._storage.engine.dispose()  # PostgreSQL storage: let the database be dropped below
        return {"workers": n, "complete": len(done), "repeats": repeats, "loop_s": loop,
                "startup_s": first - t0, "wall_s": wall, "trial_s": statistics.median(durations),
                "per_hour": 3600 * len(done) / loop}
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=16, help="study-wide trials per arm")
    ap.add_argument("--arms", default="1,2", help="worker counts to compare, the first is the baseline")
    ap.add_argument("--subset", type=int, default=120)
    ap.add_argument("--pg", default=os.environ.get("EVOLVE_BENCH_PG", "root@127.0.0.1:5432"),
                    help="USER@HOST:PORT of a PostgreSQL that may create databases (password: PGPASSWORD/passfile)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "workers.txt"))
    args = ap.parse_args()

    import psycopg

    from evolve._servers import start_mlflow_server, stop_server

    root = REPO / ".evolve-bench" / "workers"
    root.mkdir(parents=True, exist_ok=True)
    space = root / "space.yaml"
    space.write_text(SPACE)
    warm = root / f"warm-{args.subset}.sqlite"
    warm_cache(warm, args.subset)
    admin = psycopg.connect(f"postgresql://{args.pg}/postgres", autocommit=True)
    mlflow_db = f"evolve_bench_mlflow_{secrets.token_hex(4)}"
    admin.execute(f"CREATE DATABASE {mlflow_db}")
    server = None
    try:
        server, tracking = start_mlflow_server(f"postgresql+psycopg://{args.pg}/{mlflow_db}", str(root / "artifacts"),
                                               log_path=root / "mlflow-server.log")
        results = [run_arm(int(n), trials=args.trials, subset=args.subset, space=space, warm=warm, root=root,
                           admin=admin, pg=args.pg, tracking=tracking) for n in args.arms.split(",")]
    finally:
        if server is not None:
            stop_server(server, grace=10)
        admin.execute(f"DROP DATABASE IF EXISTS {mlflow_db} WITH (FORCE)")
        admin.close()

    base = results[0]["per_hour"]
    load = os.getloadavg()
    lines = [
        f"evolve workers benchmark: {args.trials} study-wide trials per arm, SciFact subset {args.subset}, "
        f"warm cache, --no-prune, PostgreSQL storage, MLflow server on PostgreSQL",
        f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end",
        "",
        f"{'workers':>7}  {'complete':>8}  {'repeats':>7}  {'startup s':>9}  {'loop s':>7}  {'median trial s':>14}  "
        f"{'trials/hour':>11}  {'ratio':>5}",
    ]
    for r in results:
        lines.append(f"{r['workers']:>7}  {r['complete']:>8}  {r['repeats']:>7}  {r['startup_s']:>9.1f}  "
                     f"{r['loop_s']:>7.1f}  {r['trial_s']:>14.2f}  {r['per_hour']:>11.0f}  {r['per_hour'] / base:>5.2f}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
