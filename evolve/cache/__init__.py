"""Content-addressed embedding cache over pluggable vector stores (SQLite locally)."""

from evolve.cache._base import Entry, StoreDamaged, StoreStats, VectorStore
from evolve.cache._cache import CacheStats, EmbeddingCache, cache_key
from evolve.cache._sqlite import SQLiteStore

__all__ = [
    "CacheStats",
    "EmbeddingCache",
    "Entry",
    "SQLiteStore",
    "StoreDamaged",
    "StoreStats",
    "VectorStore",
    "cache_key",
]
