"""The content-addressed embedding cache: keys, checksums, damage handling, statistics."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evolve._formats import BM25_VERSION, INDEX_VERSION
from evolve.cache._base import KEY_SCHEME, Entry, Found, StoreDamaged, VectorStore, today
from evolve.cache._derived import DerivedStore
from evolve.cache._tiered import TieredStore

__all__ = ["EmbeddingCache", "CacheStats", "Hits", "cache_key", "cache_keys", "keys_fingerprint"]

log = logging.getLogger("evolve.cache")


def cache_key(identity: str, kind: str, text: str) -> bytes:
    """sha256 over the key scheme, model identity, prompt type (``query``/``document``) and the exact (prefixed)
    text.

    ``kind`` is in the key on purpose: a query vector can never be served for a document (mteb#5383), even
    when both prefixes are empty. :data:`~evolve.cache.KEY_SCHEME` is in it so that a change of what keys mean
    makes every old entry unreachable (``evolve cache prune`` then removes them), never wrongly reachable.
    """
    return cache_keys(identity, kind, [text])[0]


def cache_keys(identity: str, kind: str, texts: list[str]) -> list[bytes]:
    """:func:`cache_key` of each text (the shared prefix is hashed once)."""
    if kind not in ("query", "document"):
        raise ValueError(f"kind must be 'query' or 'document', got {kind!r}")
    base = hashlib.sha256()
    for part in (f"evolve-key-scheme-{KEY_SCHEME}", identity, kind):
        b = part.encode("utf-8")
        base.update(len(b).to_bytes(8, "little"))
        base.update(b)
    out = []
    for text in texts:
        b = text.encode("utf-8")
        h = base.copy()
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
        out.append(h.digest())
    return out


def keys_fingerprint(keys: list[bytes]) -> str:
    """One digest of a list of cache keys, in order: what an index over their vectors is named by (the keys
    determine the vectors, so hashing them never needs the vectors themselves)."""
    return hashlib.blake2b(b"".join(keys), digest_size=16).hexdigest() + f":{len(keys)}"


def _checksum(key: bytes, dim: int, payload) -> bytes:
    h = hashlib.blake2b(key, digest_size=16)
    h.update(dim.to_bytes(4, "little"))
    h.update(payload)
    return h.digest()


def _intact(found: Found) -> np.ndarray:
    """Per row of ``found``: is its payload ``4 * dim`` bytes and does its checksum match? One pass over the
    shared buffer (memoryview slices: nothing is copied)."""
    lengths = np.diff(found.offsets)
    ok = lengths == 4 * found.dims
    buf = memoryview(found.payload)
    sums = found.checksums.tobytes()
    offsets = found.offsets.tolist()
    dims = found.dims.tolist()
    for i in np.flatnonzero(ok).tolist():
        if _checksum(found.keys[i], dims[i], buf[offsets[i] : offsets[i + 1]]) != sums[16 * i : 16 * i + 16]:
            ok[i] = False
    return ok


@dataclass(frozen=True)
class PruneResult:
    """What :meth:`EmbeddingCache.prune` removed."""

    entries: int  #: vectors (older key schemes included)
    files: int  #: derived files (faiss indexes, BM25 statistics, older layouts)
    file_bytes: int


@dataclass(frozen=True)
class Hits:
    """Verified vectors a lookup found: row ``i`` of ``vectors`` belongs to the key asked for at ``positions[i]``."""

    positions: np.ndarray  # int64, ascending
    vectors: np.ndarray  # float32, (len(positions), dim)
    n_damaged: int = 0


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
    from evolve._pgurl import is_postgres_url
    from evolve.cache._postgres import PostgresStore
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
        self._touched: dict[str, tuple[int, int]] = {}  # touch(memo=...) answers of the day
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
        self._touched.clear()
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
    def folder(self) -> Path | None:
        """The folder of the local SQLite file, where derived files live; None for a cache without a local file."""
        return self._path.parent if self._path is not None else None

    def derived(self, kind: str) -> DerivedStore | None:
        """The derived files of ``kind`` (``faiss``, ``bm25``) kept beside this cache, or None without a folder."""
        return DerivedStore(self.folder, kind) if self.folder is not None else None

    # ------------------------------------------------------------------ maintenance
    def prune(self, max_bytes: int | None = None) -> PruneResult:
        """Remove what no key reaches (entries of older key schemes, derived files of older layouts), then, when
        ``max_bytes`` is given, fit the cache folder into it: derived files go first (least recently used first:
        they are cheaper to rebuild than embeddings), then the least recently used vectors."""
        if self._store is None:
            return PruneResult(0, 0, 0)
        self._touched.clear()
        n_files = freed = 0
        stores = []
        if self.folder is not None:
            for kind, version in (("faiss", INDEX_VERSION), ("bm25", BM25_VERSION)):
                store = DerivedStore(self.folder, kind)
                n, b = store.clean(keep_version=version)
                n_files, freed = n_files + n, freed + b
                stores.append(store)
        budget = max_bytes
        if max_bytes is not None and stores:
            vectors = self._store.payload_bytes()
            arts = sorted(((a, store) for store in stores for a in store.artefacts()), key=lambda t: (t[0].used, t[0].name))
            derived = sum(a.size for a, _ in arts)
            for a, store in arts:
                if vectors + derived <= max_bytes:
                    break
                freed += store.remove(a.name)
                derived -= a.size
                n_files += 1
            budget = max(0, max_bytes - derived)
        try:
            removed = self._store.prune(budget)
        except StoreDamaged as err:
            self._on_damage(err)
            removed = 0
        return PruneResult(removed, n_files, freed)

    def invalidate(self, model: str) -> int:
        """Remove every vector of ``model`` and the persisted indexes built from them; how many vectors went."""
        if self._store is None:
            return 0
        self._touched.clear()
        if self.folder is not None:
            DerivedStore(self.folder, "faiss").remove_where(model=model)
        try:
            return self._store.invalidate(model)
        except StoreDamaged as err:
            self._on_damage(err)
            return 0

    @property
    def enabled(self) -> bool:
        return self._store is not None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # ------------------------------------------------------------------ reads and writes
    def lookup_bulk(self, keys: list[bytes]) -> Hits:
        """Verified vectors for the keys found, as one array (``keys`` distinct). Damaged entries (bad checksum or
        length, or a dim other than the one most entries have) are deleted and counted in ``n_damaged``."""
        empty = Hits(np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))
        if self._store is None or not keys:
            return empty
        try:
            found = self._store.get(keys)
        except StoreDamaged as err:
            self._on_damage(err)
            return empty
        if not len(found):
            return empty
        ok = _intact(found)
        if ok.any():
            dims, counts = np.unique(found.dims[ok], return_counts=True)
            ok &= found.dims == dims[np.argmax(counts)]
        bad = np.flatnonzero(~ok)
        if len(bad):
            log.warning("embedding cache: %d damaged entr(y/ies) dropped and recomputed", len(bad))
            try:
                self._store.delete([found.keys[i] for i in bad.tolist()])
            except StoreDamaged as err:
                self._on_damage(err)
        if not ok.any():
            return Hits(empty.positions, empty.vectors, len(bad))
        dim = int(found.dims[ok][0])
        if not len(bad) and found.payload.size == 4 * dim * len(found):  # the usual case: one zero-copy view
            vectors = found.payload.view(np.float32).reshape(len(found), dim)
            return Hits(found.positions, vectors, 0)
        rows = np.flatnonzero(ok)
        starts = found.offsets[rows]
        vectors = np.empty((len(rows), dim), dtype=np.float32)
        as_bytes = vectors.view(np.uint8).reshape(len(rows), 4 * dim)
        for j, start in enumerate(starts.tolist()):
            as_bytes[j] = found.payload[start : start + 4 * dim]
        return Hits(found.positions[rows], vectors, len(bad))

    def lookup(self, keys: list[bytes]) -> tuple[dict[bytes, np.ndarray], int]:
        """Verified vectors for the keys found, one per key; the count of damaged entries dropped. (Slow on
        purpose at scale: :meth:`lookup_bulk` is the bulk path.)"""
        keys = list(dict.fromkeys(keys))
        hits = self.lookup_bulk(keys)
        return {keys[p]: hits.vectors[i] for i, p in enumerate(hits.positions.tolist())}, hits.n_damaged

    def touch(self, keys: list[bytes], *, memo: str | None = None) -> int:
        """Record ``keys`` as used today without reading their vectors; how many of them the cache holds.

        With ``memo`` (a name for this list of keys, e.g. the fingerprint of an index over their vectors), the
        answer is kept for the rest of the day: the trials of a night ask once, not once each."""
        if self._store is None or not keys:
            return 0
        day = today()
        if memo is not None and self._touched.get(memo, (None,))[0] == day:
            return self._touched[memo][1]
        try:
            n = self._store.touch(keys)
        except StoreDamaged as err:
            self._on_damage(err)
            return 0
        if memo is not None:
            self._touched[memo] = (day, n)
        return n

    def remember_present(self, memo: str, n: int) -> None:
        """Note that the ``n`` keys named ``memo`` were all just read or stored (a later :meth:`touch` with that
        memo answers ``n`` today without asking the store)."""
        if self._store is not None:
            self._touched[memo] = (today(), n)

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

    def embed(self, embedder, texts: list[str], kind: str, *, progress=None, model_name: str | None = None,
              keys: list[bytes] | None = None):
        """Vectors for ``texts`` (final, prefixed), embedding only what the cache lacks.

        Returns ``(vectors, stats)``; vectors are float32 ``(len(texts), full_dim)``. Duplicate texts are
        embedded once. ``keys``, when given, are ``cache_keys(embedder.identity(), kind, texts)`` computed
        earlier (a caller that keeps them saves hashing a large corpus again).
        """
        stats = CacheStats(n_texts=len(texts))
        if not texts:
            return np.zeros((0, 0), dtype=np.float32), stats
        if keys is None:
            keys = cache_keys(embedder.identity(), kind, texts)
        elif len(keys) != len(texts):
            raise ValueError(f"embed: {len(keys)} keys for {len(texts)} texts")
        unique, inverse = _dedupe(keys)
        hits = self.lookup_bulk(unique)
        stats.n_damaged = hits.n_damaged
        hit = np.zeros(len(unique), dtype=bool)
        hit[hits.positions] = True
        stats.n_hits = int(hit.sum()) if inverse is None else int(hit[inverse].sum())
        if progress is not None and stats.n_hits:
            progress(stats.n_hits)
        if len(hits.positions) == len(unique):
            out = hits.vectors
        else:
            todo = np.flatnonzero(~hit).tolist()
            first = None if inverse is None else np.unique(inverse, return_index=True)[1]
            out = None
            if len(hits.positions):
                out = np.empty((len(unique), hits.vectors.shape[1]), dtype=np.float32)
                out[hits.positions] = hits.vectors
            # embed and store in blocks: a run killed mid-corpus keeps what it already paid for
            model = model_name or getattr(embedder.config, "model", "?")
            for start in range(0, len(todo), self.block_size):
                block = todo[start : start + self.block_size]
                t0 = time.perf_counter()
                new = embedder.embed([texts[i if first is None else int(first[i])] for i in block], kind=kind,
                                    progress=progress)
                stats.embed_seconds += time.perf_counter() - t0
                new = np.ascontiguousarray(new, dtype=np.float32)
                if out is None:
                    out = np.empty((len(unique), new.shape[1]), dtype=np.float32)
                out[block] = new
                self.store_vectors([unique[i] for i in block], new, model)
            stats.n_embedded = len(todo)
        return (out if inverse is None else out[inverse]), stats


def _dedupe(keys: list[bytes]) -> tuple[list[bytes], np.ndarray | None]:
    """The distinct keys in first-seen order, and where each key of ``keys`` stands among them (``None`` when
    all are distinct: the usual case, checked without a Python loop)."""
    if len(dict.fromkeys(keys)) == len(keys):
        return keys, None
    index: dict[bytes, int] = {}
    for key in keys:
        index.setdefault(key, len(index))
    return list(index), np.fromiter((index[k] for k in keys), dtype=np.int64, count=len(keys))
