"""User-facing errors. Each carries a one-line message that says what was expected and what arrived."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "EvolveError",
    "ConfigError",
    "DatasetError",
    "ModelNotFoundError",
    "BackendError",
    "StorageError",
    "did_you_mean",
    "DatasetWarning",
]


class EvolveError(Exception):
    """Base of every error a user can cause. ``str(err)`` is a single line."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.message = " ".join(str(message).split("\n"))
        self.path = path
        self.line = line
        super().__init__(self.message)

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        return f"{where}{self.message}"


class ConfigError(EvolveError):
    """A pipeline config, search space or command-line override is invalid."""


class DatasetError(EvolveError):
    """A dataset is malformed (bad JSON line, duplicate id, missing file, ...)."""


class ModelNotFoundError(EvolveError):
    """A model could not be resolved locally (nothing is ever downloaded)."""


class BackendError(EvolveError):
    """An embedding/rerank backend failed (unreachable endpoint, retries exhausted, ...)."""


class StorageError(EvolveError):
    """A storage URL or workspace is unusable."""


class DatasetWarning(UserWarning):
    """Something was dropped from a dataset (empty documents, dangling qrels)."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""``."""
    matches = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""
