"""A local store in front of a shared one: read local, then remote; write both.

Each node keeps its SQLite cache (fast, no network) and shares what it embeds through the remote store
(PostgreSQL): a vector embedded on any node is embedded nowhere else. A remote that fails (server down,
network gone) is dropped with one warning and the node goes on with its local cache; damage to the local
store is raised as :class:`StoreDamaged` for :class:`~evolve.cache.EmbeddingCache` to repair.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np

from evolve.cache._base import Entry, Found, StoreDamaged, StoreStats, VectorStore

__all__ = ["TieredStore"]

log = logging.getLogger("evolve.cache")


class TieredStore(VectorStore):
    def __init__(self, local: VectorStore, remote: VectorStore | None):
        self.local = local
        self.remote = remote
        self.location = local.location + (f" in front of {remote.location}" if remote is not None else "")

    def _remote_failed(self, err: Exception) -> None:
        log.warning("shared embedding cache %s failed (%s); going on with the local cache only",
                    getattr(self.remote, "location", "?"), err)
        try:
            self.remote.close()
        except Exception:
            pass
        self.remote = None

    def _on_remote(self, method: str, *args, default=None):
        """``self.remote.<method>(*args)``; ``default`` when there is no shared store or it just failed."""
        if self.remote is None:
            return default
        try:
            return getattr(self.remote, method)(*args)
        except StoreDamaged as err:
            self._remote_failed(err)
            return default

    def get(self, keys: Sequence[bytes]) -> Found:
        found = self.local.get(keys)
        if len(found) == len(keys) or self.remote is None:
            return found
        have = np.zeros(len(keys), dtype=bool)
        have[found.positions] = True
        missing_at = np.flatnonzero(~have)
        fetched = self._on_remote("get", [keys[i] for i in missing_at.tolist()], default=None)
        if fetched is None or not len(fetched):
            return found
        self.local.put(fetched.entries())  # the cache verifies checksums; a bad one is deleted from both
        return found.merge(fetched, missing_at)

    def touch(self, keys: Sequence[bytes]) -> int:
        """Touches both tiers; the larger count (every write goes to both, so the shared store holds the union
        unless it was pruned on its own)."""
        n = self.local.touch(keys)
        return max(n, self._on_remote("touch", keys, default=0))

    def payload_bytes(self) -> int:
        return self.local.payload_bytes()

    def put(self, entries: Iterable[Entry]) -> None:
        entries = list(entries)
        self.local.put(entries)
        if entries:
            self._on_remote("put", entries)

    def delete(self, keys: list[bytes]) -> None:
        self.local.delete(keys)
        self._on_remote("delete", keys)

    def stats(self) -> StoreStats:
        """The local tier's numbers; ``self.remote.stats()`` has the shared store's."""
        s = self.local.stats()
        return StoreStats(entries=s.entries, size_bytes=s.size_bytes, location=self.location,
                          stale_entries=s.stale_entries)

    def prune(self, max_bytes: int | None) -> int:
        """Prunes the local tier only: the shared store is pruned where it is addressed on its own."""
        return self.local.prune(max_bytes)

    def invalidate(self, model: str) -> int:
        n = self.local.invalidate(model)
        return max(n, self._on_remote("invalidate", model, default=0))

    def close(self) -> None:
        self.local.close()
        if self.remote is not None:
            self.remote.close()
