"""Content-addressed embedding cache over pluggable vector stores (SQLite locally, PostgreSQL shared)."""

from evolve.cache._base import Entry, StoreDamaged, StoreStats, VectorStore
from evolve.cache._cache import CacheStats, EmbeddingCache, cache_key
from evolve.cache._postgres import PostgresStore
from evolve.cache._sqlite import SQLiteStore
from evolve.cache._tiered import TieredStore

__all__ = [
    "CacheStats",
    "EmbeddingCache",
    "Entry",
    "PostgresStore",
    "SQLiteStore",
    "StoreDamaged",
    "StoreStats",
    "TieredStore",
    "VectorStore",
    "cache_key",
]
