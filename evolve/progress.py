"""Progress reporting without printing: the library asks a factory for a tracker, the CLI supplies rich bars."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

__all__ = ["ProgressFactory", "null_progress"]


class ProgressFactory(Protocol):
    def __call__(self, description: str, total: int) -> contextlib.AbstractContextManager[Callable[[int], None]]: ...


@contextlib.contextmanager
def null_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n: None
