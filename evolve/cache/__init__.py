"""Content-addressed embedding cache over pluggable vector stores (SQLite locally, PostgreSQL shared, memory for
a server's queries), and the derived files kept beside it (persisted faiss indexes, BM25 term statistics)."""

from evolve.cache._base import KEY_SCHEME, Entry, Found, StoreDamaged, StoreStats, VectorStore
from evolve.cache._cache import CacheStats, EmbeddingCache, Hits, PruneResult, cache_key, cache_keys, keys_fingerprint
from evolve.cache._derived import DerivedStore
from evolve.cache._memory import QUERY_MEMORY_BYTES, MemoryStore
from evolve.cache._postgres import PostgresStore
from evolve.cache._sqlite import SQLiteStore
from evolve.cache._tiered import TieredStore

__all__ = [
    "KEY_SCHEME",
    "QUERY_MEMORY_BYTES",
    "CacheStats",
    "DerivedStore",
    "EmbeddingCache",
    "Entry",
    "Found",
    "Hits",
    "MemoryStore",
    "PostgresStore",
    "PruneResult",
    "SQLiteStore",
    "StoreDamaged",
    "StoreStats",
    "TieredStore",
    "VectorStore",
    "cache_key",
    "cache_keys",
    "keys_fingerprint",
]
