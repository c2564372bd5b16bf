"""Child servers evolve starts on 127.0.0.1 (the MLflow server for workers and the dashboard): start, wait until
they answer, stop them with every process they forked, also when evolve itself is told to stop (SIGTERM from
``kill``, a CI timeout or a supervisor; SIGHUP when its terminal goes away), as on Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

__all__ = ["free_port", "start_mlflow_server", "stop_server", "Stopped", "stop_on_signals"]


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by :func:`stop_on_signals` when SIGTERM or SIGHUP arrives; a KeyboardInterrupt,
    so every ``except KeyboardInterrupt`` / ``finally`` that cleans up after Ctrl-C runs for it too."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def stop_on_signals(signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP)):
    """Inside the block, SIGTERM and SIGHUP raise :class:`Stopped` (once: further ones are ignored while the
    cleanup runs, so a second ``kill`` cannot cut ``stop_server`` short). The old handlers come back after."""
    fired: list[int] = []

    def handler(signum, frame):
        if fired:
            return
        fired.append(signum)
        raise Stopped(signum)

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(backend_uri: str, artifacts: str, host: str = "127.0.0.1", port: int | None = None,
                        log_path=None) -> tuple[subprocess.Popen, str]:
    """``mlflow server`` bound to ``host`` (127.0.0.1 by default); returns the process and its URL once it answers
    (within ``EVOLVE_SERVER_START_TIMEOUT`` seconds, default 120: a new SQLite store migrates first, and a loaded
    2-core machine can take minutes)."""
    import httpx

    from evolve.errors import BackendError
    from evolve.secrets import warn_inline_password

    warn_inline_password(backend_uri, "MLflow backend store URI")
    port = port or free_port()
    # the backend URI travels in the environment, not argv (`ps` shows argv to every user of the machine)
    cmd = [sys.executable, "-m", "mlflow", "server", "--artifacts-destination", artifacts, "--host", host,
           "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": backend_uri}
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env, start_new_session=True)
    url = f"http://{host}:{port}"
    limit = float(os.environ.get("EVOLVE_SERVER_START_TIMEOUT") or 120)
    deadline = time.time() + limit
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                raise BackendError(f"mlflow server exited with code {proc.returncode}: expected it to serve {url}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    except BaseException:  # Ctrl-C or a stop signal while it starts: it must not outlive us
        stop_server(proc)
        raise
    stop_server(proc)
    raise BackendError(f"mlflow server did not answer at {url} within {limit:g} s "
                       "(a slower machine may set EVOLVE_SERVER_START_TIMEOUT)")


def stop_server(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """Stop a server started in its own session (:func:`start_mlflow_server`) with every process it forked
    (``mlflow server`` runs its app in child processes): SIGTERM to the group, SIGKILL after ``grace`` seconds."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:  # the whole group is gone already
        proc.wait()
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
