"""``evolve doctor``: check that this node can run a night (GPU stack, services, stores, workspace)."""

from __future__ import annotations

from typing import Annotated

import typer

from evolve.cli._common import CacheUrlOpt, ConfigOpt, SetOpt, StorageOpt, StudyOpt, TrackingOpt, WorkspaceOpt

__all__ = ["register", "doctor_context"]


def doctor_context(*, workspace, config: str | None, search_space: str | None, overrides: list[str] | None,
                   storage: str | None, tracking_uri: str | None, cache_url: str | None, feedback_url: str | None = None,
                   llm_url: str | None = None, llm_model: str | None = None, llm_api_key_env: str | None = None,
                   deep: bool = False, timeout: float = 10.0):
    """The :class:`~evolve.doctor.DoctorContext` of the command line: ``--config`` (else the workspace champion,
    else the shipped default: the night re-evaluates it first) and the search space the night runs (``--search-space``,
    else `evolve run`'s default; none when only ``--config`` is given), both with ``--set``."""
    from evolve.cli._common import pipeline_config
    from evolve.doctor import DoctorContext, LLMEndpoint
    from evolve.errors import ConfigError
    from evolve.search_space import load_search_space

    if config is not None:
        label = f"--config {config}"
    elif workspace.champion_path.exists():
        label = "champion"
    else:
        label = "shipped default"
    configs = {label: pipeline_config(workspace, config, overrides)}
    space = None
    if search_space is not None or config is None:
        space = load_search_space(search_space, overrides)
    llms = ()
    if llm_url or llm_model:
        if not (llm_url and llm_model):
            raise ConfigError("--llm-url and --llm-model: expected both (the gold LLM's base URL and served model id), "
                              f"got only {'--llm-url' if llm_url else '--llm-model'}")
        llms = (LLMEndpoint("gold", llm_url, llm_model, llm_api_key_env),)
    return DoctorContext(workspace, configs, space=space, storage_url=storage, tracking_uri=tracking_uri,
                         cache_url=cache_url, feedback_url=feedback_url, llms=llms, deep=deep, timeout=timeout)


def doctor_command(
    json_out: Annotated[bool, typer.Option("--json", help="Print the records as one JSON list (evolve/doctor/schema.json).")] = False,
    deep: Annotated[bool, typer.Option("--deep", help="Also start a small vLLM engine and embed one text.")] = False,
    config: ConfigOpt = None,
    search_space: Annotated[str | None, typer.Option("--search-space", help="The search space the night runs (its engines and endpoints are checked).",
                                                     show_default="configs/search_space.yaml, unless --config is given")] = None,
    set_: SetOpt = None,
    llm_url: Annotated[str | None, typer.Option("--llm-url", envvar="EVOLVE_LLM_URL", help="The gold LLM's OpenAI-compatible base URL (checked when given).")] = None,
    llm_model: Annotated[str | None, typer.Option("--llm-model", envvar="EVOLVE_LLM_MODEL", help="The gold LLM's served model id.")] = None,
    llm_api_key_env: Annotated[str | None, typer.Option("--llm-api-key-env", help="NAME of the environment variable holding the LLM's API key.")] = None,
    check: Annotated[list[str] | None, typer.Option("--check", help="Run only this check (repeatable), e.g. gpu.memory.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for each endpoint.")] = 10.0,
    workspace: WorkspaceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    cache_url: CacheUrlOpt = None,
):
    """Check this node before a night: the GPU stack (driver vs CUDA runtimes, compute capability, memory for the
    night's vLLM engines, vLLM), the endpoints, Optuna storage, MLflow tracking, the workspace, Korean and secrets.
    One line per check (ok, warn, fail, skip) with the fix; exit 1 when a check failed. Writes
    <workspace>/doctor.json."""
    from evolve.cli._common import emit_json, err_console, out_console
    from evolve.doctor import Status, exit_code, run_checks, write_report
    from evolve.errors import ConfigError
    from evolve.workspace import Workspace

    if timeout <= 0:
        raise ConfigError(f"--timeout: expected positive seconds, got {timeout:g}")
    ws = Workspace(workspace, cache_url)
    ctx = doctor_context(workspace=ws, config=config, search_space=search_space, overrides=set_, storage=storage,
                         tracking_uri=tracking_uri, cache_url=cache_url, llm_url=llm_url, llm_model=llm_model,
                         llm_api_key_env=llm_api_key_env, deep=deep, timeout=timeout)

    def show(r):
        if json_out:
            return
        out_console.print(f"{r.status.value:<4} {r.check}: {r.summary}", highlight=False, markup=False)
        if r.fix and r.status in (Status.WARN, Status.FAIL):
            out_console.print(f"     fix: {r.fix}", highlight=False, markup=False)

    results = run_checks(ctx, only=check, on_result=show)
    written = None
    try:
        write_report(ws.path / "doctor.json", results)
        written = ws.path / "doctor.json"
    except OSError as err:
        err_console.print(f"warning: could not write {ws.path / 'doctor.json'}: {err.strerror or err}", highlight=False)
    if json_out:
        emit_json([r.to_record() for r in results])
    else:
        counts = {s: sum(r.status is s for r in results) for s in Status}
        out_console.print(f"doctor: {counts[Status.OK]} ok, {counts[Status.WARN]} warn, {counts[Status.FAIL]} fail, "
                          f"{counts[Status.SKIP]} skip" + (f"; wrote {written}" if written else ""), highlight=False,
                          markup=False)
    return exit_code(results)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor_command)
