"""``evolve dashboard``: the MLflow UI on the workspace's store, bound to 127.0.0.1."""

from __future__ import annotations

from typing import Annotated

import typer

from evolve.cli._common import StorageOpt, StudyOpt, TrackingOpt, WorkspaceOpt

__all__ = ["register"]


def dashboard_command(
    host: Annotated[str, typer.Option("--host", help="Address to bind (default: loopback only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0: a free one).")] = 5000,
    workspace: WorkspaceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
):
    """Start the MLflow UI on the workspace store and print its URL; Ctrl-C (or SIGTERM, SIGHUP) stops it."""
    from evolve._servers import Stopped, free_port, start_mlflow_server, stop_on_signals, stop_server
    from evolve.cli._common import err_console, out_console
    from evolve.errors import ConfigError
    from evolve.secrets import warn_inline_password
    from evolve.workspace import Workspace

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port: expected 0..65535, got {port}")
    ws = Workspace(workspace).ensure()
    backend = tracking_uri or ws.default_tracking_uri
    if backend.startswith("http"):
        out_console.print(f"the tracking server already serves the dashboard: {backend}", highlight=False)
        return
    warn_inline_password(backend, "backend store URI")
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"warning: binding to {host}: the dashboard will be reachable from other machines", highlight=False)
    with stop_on_signals():
        try:
            proc, url = start_mlflow_server(backend, str(ws.artifacts_dir), host=host, port=port or free_port(),
                                            log_path=ws.path / "dashboard.log")
        except Stopped as stop:  # start_mlflow_server stopped what it had started
            raise typer.Exit(stop.exit_code) from None
        which = f"experiment '{study}'" if study else "one experiment per study"
        out_console.print(f"MLflow dashboard: {url}  ({which}; Ctrl-C to stop)", highlight=False)
        stopped = None
        try:
            proc.wait()
        except Stopped as stop:
            stopped = stop
        except KeyboardInterrupt:
            pass
        finally:
            stop_server(proc)
    if stopped is not None:
        err_console.print(f"stopped by {stopped}: the MLflow server is stopped too", highlight=False)
        raise typer.Exit(stopped.exit_code)


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard_command)
