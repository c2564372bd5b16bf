"""Optuna storage: URL checks, heartbeats, and the failed-trial callbacks that keep MLflow in step."""

from __future__ import annotations

import logging
from collections.abc import Callable

from evolve._pgurl import sqlalchemy_url
from evolve.errors import StorageError
from evolve.secrets import redact_url, warn_inline_password

__all__ = ["open_storage", "check_storage_url", "SUPPORTED_SCHEMES"]

log = logging.getLogger("evolve.storage")

SUPPORTED_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2", "mysql", "mysql+pymysql")


def quiet_optuna() -> None:
    """Optuna's experimental-feature warnings (heartbeats, WilcoxonPruner) are noise for our users."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def check_storage_url(url: str) -> str:
    """The URL's scheme, or a one-line :class:`StorageError` for what Optuna's RDB storage cannot use."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SUPPORTED_SCHEMES:
        raise StorageError(
            "expected an Optuna storage URL (sqlite:///PATH, postgresql+psycopg://USER@HOST/DB, mysql://…), "
            f"got '{redact_url(url)}'"
        )
    return scheme


def open_storage(url: str, *, heartbeat_interval: int = 10, grace_period: int = 60,
                 failed_trial_callback: Callable | None = None):
    """An Optuna ``RDBStorage`` with heartbeats on, or a one-line :class:`StorageError`."""
    import optuna

    scheme = check_storage_url(url)
    quiet_optuna()
    warn_inline_password(url, "storage URL")
    url = sqlalchemy_url(url)  # a bare postgresql:// names psycopg 3 when psycopg2 is absent
    engine_kwargs = {"connect_args": {"timeout": 120}} if scheme == "sqlite" else {"pool_pre_ping": True}
    if scheme == "sqlite":
        from pathlib import Path

        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StorageError(f"storage {url}: expected a writable folder, got '{err.strerror}'") from None
    import inspect

    # Optuna 4.9 renamed failed_trial_callback (the old name warns); pass whichever this Optuna knows
    cb_arg = ("heartbeat_stale_trial_callback"
              if "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage).parameters
              else "failed_trial_callback")
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            **{cb_arg: failed_trial_callback},
        )
    except Exception as err:  # sqlalchemy raises many kinds; all mean "cannot use this storage"
        reason = " ".join(str(err).split())
        if len(reason) > 200:
            reason = reason[:200] + "…"
        raise StorageError(f"storage {redact_url(url)} is unusable: {reason}") from None
