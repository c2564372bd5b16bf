"""The numbers of one `evolve run` night, read back from its workspace (Optuna study and MLflow), for the GPU vs
CPU table in docs/gpu.md:

    python benchmarks/gpu_night_report.py --workspace /root/ws-night [--gpu-mem gpu-mem.csv] [--apps gpu-apps.csv]

Per trial: wall seconds (the first trial of the night is cold: engine starts, first embedding of each chunking),
embed seconds and cache hit rate (MLflow child runs), the params that matter; for the night: vLLM engine starts
(the parent run's ``vllm_engine_starts``), wall seconds, and, given nvidia-smi samples, the GPU memory at peak.
Prints JSON (one object) on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KEYS = ("chunking.strategy", "chunking.size", "index.type", "fusion.method", "rerank.transport", "rerank.depth",
        "rerank.combine")


def _peak_gpu(path: Path) -> dict:
    """Peak of ``nvidia-smi --query-gpu=timestamp,memory.used,memory.total --format=csv,noheader,nounits -lms N``."""
    peak, total, n = 0.0, 0.0, 0
    for line in path.read_text().splitlines():
        f = [x.strip() for x in line.split(",")]
        try:
            used, tot = float(f[1]), float(f[2])
        except (IndexError, ValueError):
            continue
        n += 1
        peak, total = max(peak, used), tot
    return {"samples": n, "peak_used_mib": peak, "total_mib": total}


def _peak_apps(path: Path) -> dict:
    """Peak per process of ``--query-compute-apps=pid,process_name,used_memory`` samples."""
    peaks: dict[str, float] = {}
    for line in path.read_text().splitlines():
        f = [x.strip() for x in line.split(",")]
        if len(f) < 3 or not f[0].isdigit():
            continue
        try:
            used = float(f[-1])
        except ValueError:
            continue
        key = f"{f[0]} {','.join(f[1:-1])}"
        peaks[key] = max(peaks.get(key, 0.0), used)
    return peaks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--gpu-mem")
    ap.add_argument("--apps")
    args = ap.parse_args()

    import optuna
    from mlflow.tracking import MlflowClient

    from evolve.workspace import Workspace

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    ws = Workspace(args.workspace)
    storage = optuna.storages.RDBStorage(ws.default_storage)
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    client = MlflowClient(ws.default_tracking_uri)
    exp = client.get_experiment_by_name(study.study_name)
    runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    parent = max(parents, key=lambda r: r.info.start_time) if parents else None  # the latest night
    by_trial = {}
    for r in runs:
        name = r.data.tags.get("mlflow.runName", "")
        if name.startswith("trial-") and name[6:].isdigit():
            by_trial[int(name[6:])] = r
    trials = []
    for t in study.trials:
        r = by_trial.get(t.number)
        m = r.data.metrics if r else {}
        trials.append({
            "number": t.number, "state": t.state.name, "value": t.values[0] if t.values else None,
            "seconds": t.user_attrs.get("evolve.duration_seconds"),
            "embed_seconds": m.get("embed_seconds"), "cache_hit_rate": m.get("cache_hit_rate"),
            "repeat_of": t.user_attrs.get("evolve.repeat_of"),
            "params": {k: t.params[k] for k in KEYS if k in t.params},
        })
    done = [t for t in trials if t["seconds"] is not None and t["repeat_of"] is None]
    warm = sorted(t["seconds"] for t in done[1:])
    out = {
        "study": study.study_name, "trials": trials,
        "cold_first_trial_seconds": done[0]["seconds"] if done else None,
        "warm_median_seconds": warm[len(warm) // 2] if warm else None,
        "warm_min_seconds": warm[0] if warm else None, "warm_max_seconds": warm[-1] if warm else None,
        "night": dict(parent.data.metrics) if parent else {},
    }
    if args.gpu_mem and Path(args.gpu_mem).exists():
        out["gpu_memory"] = _peak_gpu(Path(args.gpu_mem))
    if args.apps and Path(args.apps).exists():
        out["gpu_processes_peak_mib"] = _peak_apps(Path(args.apps))
    json.dump(out, sys.stdout, indent=1, sort_keys=True, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
