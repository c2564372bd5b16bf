"""The workspace: where the cache, the study, MLflow's store, the champion and its history live."""

from __future__ import annotations

import os
from pathlib import Path

from evolve.errors import StorageError

__all__ = ["Workspace", "DEFAULT_WORKSPACE"]

DEFAULT_WORKSPACE = ".evolve"


class Workspace:
    """A folder (``--workspace``, ``EVOLVE_HOME``, default ``./.evolve``), created on first use."""

    def __init__(self, path: str | os.PathLike | None = None, cache_url: str | None = None):
        self.path = Path(path or os.environ.get("EVOLVE_HOME") or DEFAULT_WORKSPACE).expanduser().absolute()
        self._cache_url = cache_url

    def ensure(self) -> Workspace:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise StorageError(f"workspace {self.path} is not writable: expected a writable folder, got '{reason}'") from None
        return self

    @property
    def cache_path(self) -> Path:
        return self.path / "cache" / "embeddings.sqlite"

    @property
    def cache_url(self) -> str | None:
        """A shared embedding cache behind the local one (``EVOLVE_CACHE_URL``, e.g. postgresql://evolve@db/evolve);
        ``None``: the local SQLite cache only. Passwords go in PGPASSWORD or a libpq passfile, not here."""
        return self._cache_url or os.environ.get("EVOLVE_CACHE_URL") or None

    @property
    def last_run_path(self) -> Path:
        return self.path / "cache" / "last_run.json"

    @property
    def champion_path(self) -> Path:
        return self.path / "champion.yaml"

    @property
    def history_dir(self) -> Path:
        return self.path / "history"

    @property
    def holdout_looks_path(self) -> Path:
        """Every holdout evaluation, one JSON line each (:mod:`evolve.looks`); apart from ``history/``."""
        return self.path / "holdout_looks.jsonl"

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    @property
    def default_storage(self) -> str:
        return f"sqlite:///{self.path / 'optuna.db'}"

    @property
    def default_tracking_uri(self) -> str:
        return f"sqlite:///{self.path / 'mlflow.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.path / "mlartifacts"

    def __repr__(self) -> str:
        return f"Workspace({str(self.path)!r})"
