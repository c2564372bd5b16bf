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
    strategy: Annotated[str, typer.Option("--strategy", help="How trials are proposed: tpe (default), random, grid, greedy, cost.")] = "tpe",
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
                    strategy=strategy,
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
                gold: list[str] | None = None, gold_mode: str | None = None, holdout_prefer_reviewed: bool = False,
                strategy: str = "tpe"):
    """Create the study and enqueue the champion first, start ``n`` worker processes (one per GPU when ``gpus``
    lists them), wait for them, then seal the report-split metrics of the best ``report_top`` trials.

    SIGTERM and SIGHUP stop the workers and the MLflow server this started, as Ctrl-C does."""
    from evolve._servers import Stopped, stop_on_signals
    from evolve.cli._common import err_console, out_console, rich_progress, study_options
    from evolve.errors import ConfigError
    from evolve.study import prepare_workers, seal_after_workers

    gpu_list = [g.strip() for g in gpus.split(",") if g.strip()] if gpus else []
    if gpu_list and n and n != len(gpu_list):
        raise ConfigError(f"--workers {n} does not match --gpus {gpus}: expected one worker per GPU")
    n = n or len(gpu_list)
    if n < 1:
        raise ConfigError(f"--workers: expected at least 1, got {n}")
    if trials is None and timeout is None:
        raise ConfigError("expected a budget: --trials T (study-wide) and/or --timeout SECONDS, got neither")
    opts = study_options(dataset_spec=dataset, n_trials=None, timeout=timeout, seed=seed, search_space=search_space,
                    strategy=strategy,
                    overrides=set_, objectives=objectives, split_seed=split_seed, prune=not no_prune, subset=subset,
                    heartbeat_interval=heartbeat_interval, grace_period=grace_period, gold=gold, gold_mode=gold_mode,
                    holdout_prefer_reviewed=holdout_prefer_reviewed, workspace=workspace,
                    study_name=study, storage_url=storage, tracking_uri=tracking_uri, cache_url=cache_url,
                    report_top=report_top)
    st, gold_spec = prepare_workers(opts)  # create it once with its gold and roles (workers only join), champion first
    deadline = time.time() + timeout if timeout else None
    argv = [sys.executable, "-m", "evolve", "worker", "--dataset", dataset, "--study", st.study_name,
            "--workspace", str(opts.workspace.path), "--split-seed", str(split_seed),
            "--heartbeat-interval", str(heartbeat_interval), "--grace-period", str(grace_period),
            "--max-retry", str(max_retry), "--strategy", strategy]
    # storage and cache URIs reach the workers through their environment, never argv (`ps` shows argv)
    env = {}
    if cache_url:
        env["EVOLVE_CACHE_URL"] = cache_url
    if storage:
        env["EVOLVE_STORAGE"] = storage
    if trials is not None:
        argv += ["--trials", str(trials)]
    if deadline is not None:
        argv += ["--deadline", f"{deadline:.0f}"]
    for flag, value in (("--search-space", search_space), ("--objectives", objectives), ("--subset", subset)):
        if value is not None:
            argv += [flag, str(value)]
    for folder in gold_spec.folders:
        argv += ["--gold", folder]
    if gold_spec.folders:
        argv += ["--gold-mode", gold_spec.mode]
    if no_prune:
        argv.append("--no-prune")
    for item in set_ or []:
        argv += ["--set", item]
    with stop_on_signals():
        try:
            codes = _start_and_wait(n, argv, env, seed=seed, gpu_list=gpu_list, workspace=opts.workspace,
                                    tracking_uri=tracking_uri)
        except Stopped as stop:
            err_console.print(f"stopped by {stop}: the workers and the MLflow server this started are stopped",
                              highlight=False)
            raise typer.Exit(stop.exit_code) from None
    out_console.print(f"{n} worker(s) finished with exit codes {codes}", highlight=False)
    if all(c != 0 for c in codes):
        raise typer.Exit(1)
    sealed = seal_after_workers(opts, progress=rich_progress)
    if sealed:
        out_console.print(f"report (test) metrics of {len(sealed)} best trial(s) computed and sealed: shown only "
                          "once a trial is promoted", highlight=False)


def _start_and_wait(n: int, argv: list[str], env: dict[str, str], *, seed: int | None, gpu_list: list[str], workspace,
                    tracking_uri: str | None) -> list[int]:
    """The MLflow server (unless ``tracking_uri`` names one) and ``n`` workers; returns their exit codes. On
    Ctrl-C or a stop signal the workers get SIGTERM (SIGKILL after 30 s) and the server is stopped."""
    from evolve._servers import start_mlflow_server, stop_server
    from evolve.cli._common import err_console

    server = None
    procs: list[subprocess.Popen] = []
    try:
        uri = tracking_uri
        if uri is None:
            server, uri = start_mlflow_server(workspace.default_tracking_uri, str(workspace.artifacts_dir),
                                              log_path=workspace.path / "mlflow-server.log")
            err_console.print(f"started a local MLflow server for the workers at {uri}", highlight=False)
        for i in range(n):
            child_env = {**os.environ, **env, "EVOLVE_TRACKING_URI": uri}  # by environment, never argv
            if gpu_list:
                child_env["CUDA_VISIBLE_DEVICES"] = gpu_list[i]
            cmd = argv + (["--seed", str(seed + i)] if seed is not None else [])
            procs.append(subprocess.Popen(cmd, env=child_env))
        return [p.wait() for p in procs]
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP (evolve._servers.Stopped)
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        raise
    finally:
        if server is not None:
            stop_server(server)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker_command)
