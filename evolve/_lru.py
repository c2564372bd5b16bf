"""A thread-safe in-process LRU bounded by bytes (indexes, BM25 statistics, chunk sets kept across trials)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["ByteLRU"]

V = TypeVar("V")


class ByteLRU(Generic[V]):
    """Values with their sizes; :meth:`put` evicts least-recently-used values until the total is at most
    ``max_bytes``. The value just put always stays, even when it alone is larger than the bound (the caller is
    using it), so the bound is exceeded by at most one value."""

    def __init__(self, max_bytes: int | Callable[[], int]):
        self._max = max_bytes
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._lock = threading.RLock()

    @property
    def max_bytes(self) -> int:
        return int(self._max() if callable(self._max) else self._max)

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: V, nbytes: int) -> None:
        with self._lock:
            self._items[key] = (value, int(nbytes))
            self._items.move_to_end(key)
            limit = self.max_bytes
            while len(self._items) > 1 and self.total_bytes() > limit:
                oldest = next(iter(self._items))
                if oldest == key:
                    break
                self._items.pop(oldest)

    def total_bytes(self) -> int:
        with self._lock:
            return sum(n for _, n in self._items.values())

    def discard(self, predicate: Callable[[Hashable], bool]) -> int:
        """Forget every value whose key matches; how many went."""
        with self._lock:
            gone = [k for k in self._items if predicate(k)]
            for k in gone:
                self._items.pop(k)
            return len(gone)

    def snapshot(self) -> list[tuple[Hashable, V, int]]:
        """Every (key, value, size), least recently used first (to put back with :meth:`restore`)."""
        with self._lock:
            return [(k, v, n) for k, (v, n) in self._items.items()]

    def restore(self, items: list[tuple[Hashable, V, int]]) -> None:
        with self._lock:
            self._items.clear()
            for k, v, n in items:
                self._items[k] = (v, n)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)
