"""A vector store in memory only, bounded by bytes: the query vectors of a server.

What people type into ``evolve serve`` must not outlive the process: a query vector is invertible enough to
check guesses against, and its key is an unsalted hash of the text. Served queries are embedded through an
:class:`~evolve.cache.EmbeddingCache` over this store (:meth:`evolve.pipeline.Pipeline.search_texts`): a
repeated query is answered from memory, nothing is written to disk, and the least recently used vectors go
once the bound is reached, so no client can grow it without limit. The nightly run still caches what it
embeds in the persistent stores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from evolve._lru import ByteLRU
from evolve.cache._base import Entry, Found, FoundBuilder, StoreStats, VectorStore

__all__ = ["MemoryStore", "QUERY_MEMORY_BYTES"]

#: the default bound of a server's query vectors (about 20,000 vectors of 384 dimensions)
QUERY_MEMORY_BYTES = 32 * 2**20


def _size(entry: Entry) -> int:
    """What an entry counts for, as every store counts it (payload + key + model + 48)."""
    return len(entry.payload) + len(entry.key) + len(entry.model.encode()) + 48


class MemoryStore(VectorStore):
    """:class:`VectorStore` in this process's memory, at most ``max_bytes`` (least recently used go first)."""

    def __init__(self, max_bytes: int = QUERY_MEMORY_BYTES):
        self._lru: ByteLRU[Entry] = ByteLRU(int(max_bytes))
        self.location = f"memory (at most {int(max_bytes) // 2**20} MiB)"

    def get(self, keys: Sequence[bytes]) -> Found:
        found = FoundBuilder()
        for pos, key in enumerate(keys):
            entry = self._lru.get(bytes(key))
            if entry is not None:
                found.add(pos, entry.key, entry.model, entry.dim, entry.payload, entry.checksum)
        return found.build()

    def touch(self, keys: Sequence[bytes]) -> int:
        return sum(self._lru.get(bytes(k)) is not None for k in keys)

    def put(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            if bytes(entry.key) not in self._lru:
                self._lru.put(bytes(entry.key), entry, _size(entry))

    def delete(self, keys: Sequence[bytes]) -> None:
        gone = {bytes(k) for k in keys}
        self._lru.discard(lambda k: k in gone)

    def stats(self) -> StoreStats:
        return StoreStats(len(self._lru), self._lru.total_bytes(), self.location)

    def prune(self, max_bytes: int | None) -> int:
        if max_bytes is None:
            return 0
        items = self._lru.snapshot()  # least recently used first
        total = sum(n for _, _, n in items)
        n_gone = 0
        while items and total > max_bytes:
            _, _, n = items.pop(0)
            total -= n
            n_gone += 1
        self._lru.restore(items)
        return n_gone

    def invalidate(self, model: str) -> int:
        items = self._lru.snapshot()
        kept = [(k, e, n) for k, e, n in items if e.model != model]
        self._lru.restore(kept)
        return len(items) - len(kept)

    def payload_bytes(self) -> int:
        return self._lru.total_bytes()

    def close(self) -> None:
        self._lru.clear()
