"""The content-addressed embedding cache: keys, checksums, damage handling, statistics."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evolve.cache._base import Entry, StoreDamaged, VectorStore
from evolve.cache._tiered import TieredStore

__all__ = ["EmbeddingCache", "CacheStats", "cache_key"]

log = logging.getLogger("evolve.cache")


def cache_key(identity: str, kind: str, text: str) -> bytes:
    """sha256 over model identity, prompt type (``query``/``document``) and the exact (prefixed) text.

    ``kind`` is in the key on purpose: a query vector can never be served for a document (mteb#5383), even
    when both prefixes are empty.
    """
    if kind not in ("query", "document"):
        raise ValueError(f"kind must be 'query' or 'document', got {kind!r}")
    h = hashlib.sha256()
    for part in (identity, kind, text):
        b = part.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.digest()


def _checksum(key: bytes, dim: int, payload: bytes) -> bytes:
    return hashlib.blake2b(key + dim.to_bytes(4, "little") + payload, digest_size=16).digest()


@dataclass
class CacheStats:
    """What one evaluation asked of the cache."""

    n_texts: int = 0
    n_hits: int = 0
    n_embedded: int = 0
    n_damaged: int = 0
    embed_seconds: float = 0.0
    by_kind: dict = field(default_factory=dict)

    @property
    def hit_rate(self) -> float:
        return self.n_hits / self.n_texts if self.n_texts else 1.0

    def add(self, other: CacheStats) -> None:
        self.n_texts += other.n_texts
        self.n_hits += other.n_hits
        self.n_embedded += other.n_embedded
        self.n_damaged += other.n_damaged
        self.embed_seconds += other.embed_seconds

    def as_dict(self) -> dict:
        return {
            "n_texts": self.n_texts,
            "n_hits": self.n_hits,
            "n_embedded": self.n_embedded,
            "n_damaged": self.n_damaged,
            "embed_seconds": round(self.embed_seconds, 4),
            "cache_hit_rate": round(self.hit_rate, 6),
        }


def _open_url(url: str) -> VectorStore | None:
    """``postgresql://…`` -> :class:`PostgresStore`; an unreachable store is a warning, never an error."""
    from evolve.cache._postgres import PostgresStore, is_postgres_url
    from evolve.errors import ConfigError
    from evolve.secrets import redact_url

    if not is_postgres_url(url):
        raise ConfigError(f"cache URL: expected postgresql://USER@HOST[:PORT]/DB, got '{redact_url(url)}'")
    try:
        return PostgresStore(url)
    except StoreDamaged as err:
        log.warning("shared embedding cache unusable (%s); going on without it", err)
        return None


def _tier(local: VectorStore | None, remote: VectorStore | None) -> VectorStore | None:
    """``local`` with ``remote`` behind it (either may be missing)."""
    if remote is None:
        return local
    if local is None:
        return remote
    return TieredStore(local, remote)


class EmbeddingCache:
    """Full-dimension vectors keyed by :func:`cache_key`, verified on every read.

    ``store`` is a :class:`VectorStore`, or a path to a SQLite file, or a ``postgresql://`` URL (a cache shared
    across machines), or ``None`` to disable caching (every text is embedded). ``remote`` (a store or a URL)
    puts a shared store behind ``store`` (tiered: read local, then remote; write both); see :meth:`open`. A store found damaged is moved aside and rebuilt with a one-line warning; a damaged
    entry is dropped and recomputed. Neither ever raises.
    """

    #: texts embedded (and stored) per block; the embedder batches inside a block
    block_size: int = 4096

    def __init__(self, store: VectorStore | str | os.PathLike | None, *, remote: VectorStore | str | None = None):
        self._path: Path | None = None
        self._store: VectorStore | None = None
        if store is None:
            return
        if remote is not None and not isinstance(remote, VectorStore):
            remote = _open_url(remote)
        if isinstance(store, VectorStore):
            self._store = _tier(store, remote)
        elif isinstance(store, str) and "://" in store:
            self._store = _tier(_open_url(store), remote)
        else:
            self._path = Path(store)
            self._store = _tier(self._open_sqlite(), remote)

    @classmethod
    def open(cls, workspace, cache_url: str | None = None) -> EmbeddingCache:
        """The cache a command uses: the workspace's SQLite file, with a shared store behind it when
        ``cache_url`` (else the workspace's ``EVOLVE_CACHE_URL``) names one (``postgresql://USER@HOST/DB``): the
        local cache stays in front (read local, then shared; write both)."""
        url = cache_url or workspace.cache_url
        return cls(workspace.cache_path, remote=url) if url else cls(workspace.cache_path)

    # ------------------------------------------------------------------ store lifecycle
    def _open_sqlite(self) -> VectorStore | None:
        from evolve.cache._sqlite import SQLiteStore

        try:
            return SQLiteStore(self._path)
        except StoreDamaged as err:
            self._quarantine(str(err))
            try:
                return SQLiteStore(self._path)
            except StoreDamaged as err2:  # pragma: no cover - disk trouble
                log.warning("embedding cache %s unusable (%s); running without a cache", self._path, err2)
                return None

    def _quarantine(self, reason: str) -> None:
        assert self._path is not None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self._path.with_name(f"{self._path.name}.damaged-{stamp}-{os.getpid()}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self._path) + suffix)
            if src.exists():
                try:
                    os.replace(src, Path(str(aside) + suffix))
                except OSError:
                    pass
        log.warning("embedding cache %s was damaged (%s); moved aside to %s and rebuilt", self._path, reason, aside.name)

    def _on_damage(self, err: Exception) -> None:
        remote = None
        if isinstance(self._store, TieredStore):  # the local tier is damaged, the shared one lives on
            remote = self._store.remote
            self._store.local.close()
        elif self._store is not None:
            self._store.close()
        if self._path is not None:
            self._quarantine(str(err))
            self._store = _tier(self._open_sqlite(), remote)
        else:
            log.warning("embedding cache %s failed (%s); continuing without it", getattr(self._store, "location", "?"), err)
            self._store = None

    @property
    def store(self) -> VectorStore | None:
        return self._store

    @property
    def enabled(self) -> bool:
        return self._store is not None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # ------------------------------------------------------------------ reads and writes
    def lookup(self, keys: list[bytes]) -> tuple[dict[bytes, np.ndarray], int]:
        """Verified vectors for the keys found; the count of damaged entries dropped."""
        if self._store is None or not keys:
            return {}, 0
        try:
            entries = self._store.get(keys)
        except StoreDamaged as err:
            self._on_damage(err)
            return {}, 0
        good: dict[bytes, np.ndarray] = {}
        bad: list[bytes] = []
        for key, e in entries.items():
            if (
                e.key == key
                and len(e.payload) == 4 * e.dim
                and _checksum(key, e.dim, e.payload) == e.checksum
            ):
                good[key] = np.frombuffer(e.payload, dtype=np.float32)
            else:
                bad.append(key)
        if bad:
            log.warning("embedding cache: %d damaged entr(y/ies) dropped and recomputed", len(bad))
            try:
                self._store.delete(bad)
            except StoreDamaged as err:
                self._on_damage(err)
        return good, len(bad)

    def store_vectors(self, keys: list[bytes], vectors: np.ndarray, model: str) -> None:
        if self._store is None or not keys:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = int(vectors.shape[1])
        entries = []
        for key, vec in zip(keys, vectors):
            payload = vec.tobytes()
            entries.append(Entry(key, model, dim, payload, _checksum(key, dim, payload)))
        try:
            self._store.put(entries)
        except StoreDamaged as err:
            self._on_damage(err)

    def embed(self, embedder, texts: list[str], kind: str, *, progress=None, model_name: str | None = None):
        """Vectors for ``texts`` (final, prefixed), embedding only what the cache lacks.

        Returns ``(vectors, stats)``; vectors are float32 ``(len(texts), full_dim)``. Duplicate texts are
        embedded once.
        """
        stats = CacheStats(n_texts=len(texts))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32), stats
        identity = embedder.identity()
        keys = [cache_key(identity, kind, t) for t in texts]
        found, stats.n_damaged = self.lookup(list(dict.fromkeys(keys)))
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts):
            if key not in found and key not in missing:
                missing[key] = text
        stats.n_hits = sum(1 for k in keys if k in found)
        if progress is not None and stats.n_hits:
            progress(stats.n_hits)
        if missing:
            # embed and store in blocks: a run killed mid-corpus keeps what it already paid for
            todo = list(missing.items())
            model = model_name or getattr(embedder.config, "model", "?")
            for start in range(0, len(todo), self.block_size):
                block = todo[start : start + self.block_size]
                t0 = time.perf_counter()
                new = embedder.embed([text for _, text in block], progress=progress)
                stats.embed_seconds += time.perf_counter() - t0
                new = np.ascontiguousarray(new, dtype=np.float32)
                keys_block = [key for key, _ in block]
                self.store_vectors(keys_block, new, model)
                for key, vec in zip(keys_block, new):
                    found[key] = vec
            stats.n_embedded = len(missing)
        dim = len(next(iter(found.values())))
        out = np.empty((len(texts), dim), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = found[key]
        return out, stats
