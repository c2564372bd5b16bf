"""The vector-store extension point behind the embedding cache."""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Entry", "VectorStore", "StoreStats"]


@dataclass(frozen=True)
class Entry:
    """One cached vector. ``checksum`` covers key and payload; the cache verifies it on every read."""

    key: bytes
    model: str
    dim: int
    payload: bytes
    checksum: bytes


@dataclass(frozen=True)
class StoreStats:
    entries: int
    size_bytes: int
    location: str


class VectorStore(abc.ABC):
    """A durable key -> vector map shared by trials, nights and (for some stores) machines.

    Contract:

    * :meth:`get` returns the entries it has for ``keys`` (missing keys are simply absent) and records them as
      recently used. It never returns a half-written entry: writes are transactional.
    * :meth:`put` is idempotent (an existing key is left as it is) and safe with other writer processes.
    * :meth:`delete` removes keys (damaged entries); :meth:`prune` removes least-recently-used entries until
      the store holds at most ``max_bytes``; :meth:`invalidate` removes every entry of a model name.
    * A store that finds itself damaged raises :class:`StoreDamaged`; the cache then rebuilds it. Any other
      exception is a bug.
    """

    location: str = ""

    @abc.abstractmethod
    def get(self, keys: list[bytes]) -> dict[bytes, Entry]: ...

    @abc.abstractmethod
    def put(self, entries: Iterable[Entry]) -> None: ...

    @abc.abstractmethod
    def delete(self, keys: list[bytes]) -> None: ...

    @abc.abstractmethod
    def stats(self) -> StoreStats: ...

    @abc.abstractmethod
    def prune(self, max_bytes: int) -> int:
        """Remove least-recently-used entries until at most ``max_bytes`` remain; return how many went."""

    @abc.abstractmethod
    def invalidate(self, model: str) -> int:
        """Remove every entry of ``model``; return how many went."""

    def close(self) -> None:
        """Release connections. Idempotent."""


class StoreDamaged(Exception):
    """The store's files are damaged beyond per-entry repair."""


__all__.append("StoreDamaged")
