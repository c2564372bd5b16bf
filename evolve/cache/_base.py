"""The vector-store extension point behind the embedding cache."""

from __future__ import annotations

import abc
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["KEY_SCHEME", "TOUCH_DAY_SECONDS", "Entry", "Found", "FoundBuilder", "StoreDamaged", "StoreStats",
           "VectorStore", "today"]

#: The version of what a cache key hashes (:func:`evolve.cache.cache_key`) and of the entry checksum. Bump it
#: whenever either changes: keys of an older scheme can no longer be computed, so their entries are dead weight
#: that ``evolve cache prune`` removes. 2: embedder identities carry the effective token limit and the resolved
#: dtype (issue 14, item 8).
KEY_SCHEME = 2

#: Recency is kept per calendar day (UTC): a read refreshes an entry's day at most once a day, so a fully cached
#: trial writes nothing after the first read of the day.
TOUCH_DAY_SECONDS = 86_400


def today(clock=time.time) -> int:
    """Days since the epoch (UTC): the unit of an entry's last use."""
    return int(clock() // TOUCH_DAY_SECONDS)


@dataclass(frozen=True)
class Entry:
    """One vector to store. ``checksum`` covers key, dim and payload; the cache verifies it on every read."""

    key: bytes
    model: str
    dim: int
    payload: bytes
    checksum: bytes


@dataclass(frozen=True)
class Found:
    """What a store found for a list of keys, column-wise and in the order the keys were asked for.

    Row ``i`` is ``keys[i]``, asked for at ``positions[i]``: its vector is ``payload[offsets[i]:offsets[i + 1]]`` (raw bytes, float32 when
    intact) with ``dims[i]`` components, and ``checksums[16 * i : 16 * i + 16]`` its stored checksum (cut or
    zero-padded to 16 bytes). Nothing here is verified: :class:`~evolve.cache.EmbeddingCache` does that, in bulk.
    One contiguous buffer holds every payload, so a million vectors are a million rows of one array, not a
    million Python objects.
    """

    keys: list[bytes]
    positions: np.ndarray  # int64, (n,): where each row's key stands in the list asked for
    models: list[str]
    dims: np.ndarray  # int64, (n,)
    offsets: np.ndarray  # int64, (n + 1,)
    payload: np.ndarray  # uint8, (offsets[-1],)
    checksums: np.ndarray  # uint8, (16 * n,)

    def __len__(self) -> int:
        return len(self.keys)

    def entries(self) -> list[Entry]:
        """The rows as :class:`Entry` objects (for copying between stores; slow on purpose: one per row)."""
        out = []
        for i, key in enumerate(self.keys):
            payload = self.payload[self.offsets[i] : self.offsets[i + 1]].tobytes()
            out.append(Entry(key, self.models[i], int(self.dims[i]), payload, self.checksums[16 * i : 16 * i + 16].tobytes()))
        return out

    @staticmethod
    def empty() -> Found:
        return FoundBuilder().build()

    def merge(self, other: Found, other_positions: np.ndarray) -> Found:
        """These rows and ``other``'s, whose positions map through ``other_positions``, in the order asked."""
        if not len(other):
            return self
        b = FoundBuilder()
        b.extend_found(self)
        b.extend_found(other, np.asarray(other_positions, dtype=np.int64)[other.positions])
        return b.build().sorted()

    def sorted(self) -> Found:
        """The rows in the order of their positions."""
        if len(self) < 2 or bool(np.all(self.positions[1:] >= self.positions[:-1])):
            return self
        b = FoundBuilder()
        for i in np.argsort(self.positions, kind="stable"):
            b.add(int(self.positions[i]), self.keys[i], self.models[i], int(self.dims[i]),
                  self.payload[self.offsets[i] : self.offsets[i + 1]].tobytes(),
                  self.checksums[16 * i : 16 * i + 16].tobytes())
        return b.build()


@dataclass
class FoundBuilder:
    """Accumulates rows into a :class:`Found` (stores call :meth:`add` per row as the driver hands rows over)."""

    keys: list[bytes] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    dims: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    payload: bytearray = field(default_factory=bytearray)
    checksums: bytearray = field(default_factory=bytearray)
    _models: dict[str, str] = field(default_factory=dict)

    def add(self, position: int, key: bytes, model: str, dim: int, payload: bytes, checksum: bytes) -> None:
        self.positions.append(position)
        self.keys.append(bytes(key))
        self.models.append(self._models.setdefault(model, model))  # one str object per model, not per row
        self.dims.append(int(dim))
        self.lengths.append(len(payload))
        self.payload += payload
        checksum = bytes(checksum)
        self.checksums += checksum[:16] if len(checksum) >= 16 else checksum.ljust(16, b"\0")

    def extend_found(self, f: Found, positions: np.ndarray | None = None) -> None:
        self.positions.extend(int(p) for p in (f.positions if positions is None else positions))
        self.keys.extend(f.keys)
        for m in f.models:
            self.models.append(self._models.setdefault(m, m))
        self.dims.extend(int(d) for d in f.dims)
        self.lengths.extend(int(n) for n in np.diff(f.offsets))
        self.payload += f.payload.tobytes()
        self.checksums += f.checksums.tobytes()

    def build(self) -> Found:
        offsets = np.zeros(len(self.keys) + 1, dtype=np.int64)
        np.cumsum(np.asarray(self.lengths, dtype=np.int64), out=offsets[1:])
        return Found(
            keys=self.keys,
            positions=np.asarray(self.positions, dtype=np.int64),
            models=self.models,
            dims=np.asarray(self.dims, dtype=np.int64),
            offsets=offsets,
            payload=np.frombuffer(self.payload, dtype=np.uint8),
            checksums=np.frombuffer(self.checksums, dtype=np.uint8),
        )


@dataclass(frozen=True)
class StoreStats:
    entries: int
    size_bytes: int
    location: str
    #: entries written under an older :data:`KEY_SCHEME`: no key reaches them any more; ``cache prune`` removes them
    stale_entries: int = 0


class VectorStore(abc.ABC):
    """A durable key -> vector map shared by trials, nights and (for some stores) machines.

    Contract:

    * :meth:`get` returns what it has for ``keys`` as one :class:`Found` (column-wise, in the order asked, missing
      keys simply absent; bulk, never one object per vector beyond what the database driver hands over). It
      never returns a half-written entry: writes are transactional. It records the entries found as used
      today, writing at most once per entry and day (:data:`TOUCH_DAY_SECONDS`): a read of entries already
      used today writes nothing and takes no write lock.
    * :meth:`touch` records keys as used today exactly as :meth:`get` does, without reading their vectors, and
      returns how many of them the store holds (a caller serving vectors from an index built earlier checks
      that the cache still has them all, and keeps their recency).
    * :meth:`put` is idempotent (an existing key is left as it is), safe with other writer processes, and
      stores entries under the current :data:`KEY_SCHEME`, used today.
    * :meth:`delete` removes keys (damaged entries); :meth:`invalidate` removes every entry of a model name.
    * :meth:`prune` first removes every entry of an older :data:`KEY_SCHEME` (unreachable), then the
      least-recently-used entries (by day of last use) until the store holds at most ``max_bytes`` (``None``:
      no size limit), and returns how many went. Sizes count payload + key + model + 48 bytes per entry on
      every store, so one ``--max-size`` means the same everywhere.
    * A store that finds itself damaged raises :class:`StoreDamaged`; the cache then rebuilds it. Any other
      exception is a bug.
    """

    location: str = ""

    @abc.abstractmethod
    def get(self, keys: Sequence[bytes]) -> Found: ...

    @abc.abstractmethod
    def touch(self, keys: Sequence[bytes]) -> int: ...

    @abc.abstractmethod
    def put(self, entries: Iterable[Entry]) -> None: ...

    @abc.abstractmethod
    def delete(self, keys: Sequence[bytes]) -> None: ...

    @abc.abstractmethod
    def stats(self) -> StoreStats: ...

    @abc.abstractmethod
    def prune(self, max_bytes: int | None) -> int:
        """Remove older-scheme entries, then least-recently-used ones until at most ``max_bytes`` remain."""

    @abc.abstractmethod
    def invalidate(self, model: str) -> int:
        """Remove every entry of ``model``; return how many went."""

    @abc.abstractmethod
    def payload_bytes(self) -> int:
        """Bytes the current-scheme entries count for :meth:`prune` (payload + key + model + 48 each)."""

    def close(self) -> None:
        """Release connections. Idempotent."""


class StoreDamaged(Exception):
    """The store's files are damaged beyond per-entry repair."""
