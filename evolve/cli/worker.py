"""``evolve worker`` joins a study; ``evolve run --workers N`` starts N local workers and waits for them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Annotated

import typer

from evolve.cli._common import (
    CacheUrlOpt,
    DatasetOpt,
    GoldModeOpt,
    GoldOpt,
    StorageOpt,
    StudyOpt,
    TrackingOpt,
    WorkspaceOpt,
)

__all__ = ["register", "worker_command", "run_workers"]


def worker_command(
    dataset: DatasetOpt = "scifact",
    trials: Annotated[int | None, typer.Option("--trials", "-n", help="Study-wide total of completed (or pruned) trials.")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Wall-clock budget of this worker in seconds.")] = None,
    deadline: Annotated[float | None, typer.Option("--deadline", help="Study-wide deadline as a Unix timestamp.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Sampler seed of this worker.")] = None,
    search_space: Annotated[str | None, typer.Option("--search-space", help="Search space YAML (must match the study).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Pin a config key (must match the study).")] = None,
    objectives: Annotated[str | None, typer.Option("--objectives", help="Must match the study.")] = None,
    split_seed: Annotated[int, typer.Option("--split-seed")] = 0,
    no_prune: Annotated[bool, typer.Option("--no-prune")] = False,
    subset: Annotated[int | None, typer.Option("--subset")] = None,
    heartbeat_interval: Annotated[int, typer.Option("--heartbeat-interval")] = 10,
    grace_period: Annotated[int, typer.Option("--grace-period")] = 60,
    max_retry: Annotated[int, typer.Option("--max-retry", help="Retries of a trial whose worker died.")] = 2,
    create: Annotated[bool, typer.Option("--create", help="Create the study when it does not exist yet.")] = False,
    gold: GoldOpt = None,
    gold_mode: GoldModeOpt = None,
    workspace: WorkspaceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    cache_url: CacheUrlOpt = None,
):
    """Join an existing study and run trials until its study-wide budget is spent."""
    from evolve.cli._common import rich_progress, study_options, trial_printer
    from evolve.errors import ConfigError
    from evolve.study import run_study

    if trials is None and timeout is None and deadline is None:
        raise ConfigError("expected a study-wide budget: --trials N, --timeout SECONDS and/or --deadline, got none")
    opts = study_options(dataset_spec=dataset, n_trials=None, timeout=timeout, seed=seed, search_space=search_space,
                    overrides=set_, objectives=objectives, split_seed=split_seed, prune=not no_prune, subset=subset,
                    heartbeat_interval=heartbeat_interval, grace_period=grace_period, gold=gold, gold_mode=gold_mode,
                    workspace=workspace, study_name=study, storage_url=storage, tracking_uri=tracking_uri, study_total=trials,
                    cache_url=cache_url,
                    deadline=deadline, max_retry=max_retry, worker=not create)
    summary = run_study(opts, progress=rich_progress, on_trial=trial_printer())
    from evolve.cli._common import out_console

    out_console.print(
        f"worker {os.getpid()} done: {len(summary.trial_numbers)} trial(s), {summary.n_complete} complete, "
        f"{summary.n_pruned} pruned, {summary.n_failed} failed",
        highlight=False,
    )
    if summary.all_failed:
        raise typer.Exit(1)


def run_workers(*, n: int, trials: int | None, timeout: float | None, gpus: str | None, dataset: str, seed: int | None,
                set_: list[str] | None,
                search_space: str | None, objectives: str | None, split_seed: int, no_prune: bool, subset: int | None,
                heartbeat_interval: int, grace_period: int, max_retry: int, report_top: int, workspace: str | None,
                study: str, storage: str | None, tracking_uri: str | None, cache_url: str | None = None,
                gold: list[str] | None = None, gold_mode: str | None = None, holdout_prefer_reviewed: bool = False):
    """Create the study, start ``n`` worker processes (one per GPU when ``gpus`` lists them), wait for them."""
    from evolve._servers import start_mlflow_server, stop_server
    from evolve.cli._common import err_console, out_console, study_options
    from evolve.errors import ConfigError
    from evolve.study import load_study_data, prepare_study

    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else []
    if gpu_list and n and n != len(gpu_list):
        raise ConfigError(f"--workers {n} does not match --gpus {gpus}: expected one worker per GPU")
    n = n or len(gpu_list)
    if n < 1:
        raise ConfigError(f"--workers: expected at least 1, got {n}")
    if trials is None and timeout is None:
        raise ConfigError("expected a budget: --trials T (study-wide) and/or --timeout SECONDS, got neither")
    opts = study_options(dataset_spec=dataset, n_trials=None, timeout=timeout, seed=seed, search_space=search_space,
                    overrides=set_, objectives=objectives, split_seed=split_seed, prune=not no_prune, subset=subset,
                    heartbeat_interval=heartbeat_interval, grace_period=grace_period, gold=gold, gold_mode=gold_mode,
                    holdout_prefer_reviewed=holdout_prefer_reviewed, workspace=workspace,
                    study_name=study, storage_url=storage, tracking_uri=tracking_uri, cache_url=cache_url)
    ds, gold_info = load_study_data(opts)
    _, st, _ = prepare_study(opts, ds, gold=gold_info)  # create it once (with its gold and roles), so workers only join
    server = None
    uri = tracking_uri
    if uri is None:
        ws = opts.workspace
        server, uri = start_mlflow_server(ws.default_tracking_uri, str(ws.artifacts_dir),
                                          log_path=ws.path / "mlflow-server.log")
        err_console.print(f"started a local MLflow server for the workers at {uri}", highlight=False)
    deadline = time.time() + timeout if timeout else None
    base = [sys.executable, "-m", "evolve", "worker", "--dataset", dataset, "--study", st.study_name,
            "--workspace", str(opts.workspace.path), "--split-seed", str(split_seed),
            "--heartbeat-interval", str(heartbeat_interval), "--grace-period", str(grace_period),
            "--max-retry", str(max_retry)]
    # storage and tracking URIs reach the workers through their environment, never argv (`ps` shows argv)
    uri_env = {"EVOLVE_TRACKING_URI": uri}
    if cache_url:
        uri_env["EVOLVE_CACHE_URL"] = cache_url  # by environment, never argv
    if storage:
        uri_env["EVOLVE_STORAGE"] = storage
    if trials is not None:
        base += ["--trials", str(trials)]
    if deadline is not None:
        base += ["--deadline", f"{deadline:.0f}"]
    for flag, value in (("--search-space", search_space), ("--objectives", objectives), ("--subset", subset)):
        if value is not None:
            base += [flag, str(value)]
    for folder in gold_info.spec.folders:
        base += ["--gold", folder]
    if gold_info.spec.folders:
        base += ["--gold-mode", gold_info.spec.mode]
    if no_prune:
        base.append("--no-prune")
    for item in set_ or []:
        base += ["--set", item]
    procs = []
    try:
        for i in range(n):
            env = {**os.environ, **uri_env}
            if gpu_list:
                env["CUDA_VISIBLE_DEVICES"] = gpu_list[i]
            cmd = base + (["--seed", str(seed + i)] if seed is not None else [])
            procs.append(subprocess.Popen(cmd, env=env))
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    finally:
        if server is not None:
            stop_server(server)
    out_console.print(f"{n} worker(s) finished with exit codes {codes}", highlight=False)
    if all(c != 0 for c in codes):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_command)
