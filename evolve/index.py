"""faiss indexes over chunk vectors: flat, HNSW, IVF; on the GPU when faiss-gpu and a GPU are present.

An index is named by the fingerprint of its vectors and its parameters. The fingerprint comes from the cache
keys of the vectors (which determine them) plus the Matryoshka dimension and normalisation, so naming an index
never reads or copies the vectors. :func:`get_index` finds an index, in order:

1. in this process: an LRU bounded by bytes (:data:`MEMORY_BYTES`), so trials that change only retrieval-side
   settings (fusion, top-k, HNSW ``ef_search``, IVF ``nprobe``) reuse it;
2. on disk, under ``<cache folder>/faiss/`` (:class:`~evolve.cache.DerivedStore`: atomic, verified, bounded,
   pruned with the cache): HNSW and IVF indexes, whose build costs minutes at a million chunks. Flat indexes are
   not persisted: a flat index *is* the vectors, rebuilt from the cache in one copy;
3. built from the vectors, which are only then read (``vectors()``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from evolve._formats import INDEX_VERSION
from evolve._lru import ByteLRU

if TYPE_CHECKING:
    from evolve.cache import DerivedStore

__all__ = ["INDEX_VERSION", "MEMORY_BYTES", "STATS", "build_index", "clear_index_cache", "get_index", "index_bytes", "index_name",
           "search_index", "vectors_fingerprint"]

log = logging.getLogger("evolve.index")

#: kinds worth persisting (a flat index is the vectors themselves)
PERSISTED = ("hnsw", "ivf")


def _default_memory() -> int:
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        ram = 16 * 2**30
    return int(min(4 * 2**30, ram // 4))


#: bytes of indexes kept in this process (default: a quarter of RAM, at most 4 GiB): at a million 384-d chunks
#: a flat index is 1.5 GB, an HNSW graph (M=32) 1.8 GB. Assign to change it.
MEMORY_BYTES = _default_memory()

_INDEXES: ByteLRU = ByteLRU(lambda: MEMORY_BYTES)

#: where each index came from in this process: ``memory``, ``disk`` (loaded from its persisted copy), ``built``
STATS = {"memory": 0, "disk": 0, "built": 0}


def vectors_fingerprint(vectors: np.ndarray) -> str:
    """A digest of the vectors themselves, hashed in place (no copy of a C-contiguous array). Callers that have
    the cache keys of the vectors name indexes by those instead (:func:`evolve.cache.keys_fingerprint`)."""
    arr = np.ascontiguousarray(vectors)
    h = hashlib.blake2b(memoryview(arr).cast("B"), digest_size=16)
    return h.hexdigest() + f":{arr.shape}:{arr.dtype}"


def clear_index_cache() -> None:
    """Forget the indexes kept in this process (persisted copies stay)."""
    _INDEXES.clear()


def _params(config, n: int) -> tuple:
    kind = config.type
    if kind == "hnsw":
        return (kind, config.hnsw_m, config.hnsw_ef_construction)
    if kind == "ivf":
        return (kind, max(1, min(config.ivf_nlist, n // 39 or 1)))
    return (kind,)


def index_name(fingerprint: str, config, n: int, seed: int) -> str:
    """The file name of an index: a digest of the vectors' fingerprint, the build parameters and the seed."""
    blob = json.dumps({"v": INDEX_VERSION, "vectors": fingerprint, "params": list(_params(config, n)), "n": n,
                       "seed": seed if config.type == "ivf" else 0}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:40]


def index_bytes(index) -> int:
    """About what ``index`` holds in memory (vectors, graph links, inverted lists)."""
    import faiss

    n, d = int(index.ntotal), int(index.d)
    size = n * d * 4
    try:
        cpu = faiss.downcast_index(index)
    except Exception:  # pragma: no cover - GPU indexes downcast differently
        cpu = index
    if isinstance(cpu, faiss.IndexHNSW):
        size += int(cpu.hnsw.neighbors.size()) * 4 + int(cpu.hnsw.levels.size()) * 4 + int(cpu.hnsw.offsets.size()) * 8
    elif isinstance(cpu, faiss.IndexIVF):
        size += n * 8 + int(cpu.nlist) * d * 4
    return size


def _gpu_resources():
    import faiss

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return None
    return faiss.StandardGpuResources()


def _build(vectors: np.ndarray, config, params: tuple, seed: int):
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    kind = params[0]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.hnsw_ef_construction
    else:
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, params[1], faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(vectors)
    index.add(vectors)
    return index


def _load(store: DerivedStore, name: str, n: int):
    import faiss

    art = store.open(name)
    if art is None:
        return None
    try:
        index = faiss.read_index(str(art.data))
    except Exception as exc:  # verified bytes faiss still refuses (another faiss version): rebuild
        log.warning("faiss index %s unreadable (%s); rebuilding it", name, " ".join(str(exc).split())[:120])
        return None
    return index if int(index.ntotal) == n else None


def get_index(fingerprint: str, config, *, n: int, vectors: Callable[[], np.ndarray], seed: int = 0,
              store: DerivedStore | None = None, model: str | None = None, reuse: bool = True):
    """The inner-product faiss index for ``config`` over the ``n`` vectors named by ``fingerprint``.

    From this process's LRU, else from ``store`` (HNSW/IVF), else built from ``vectors()`` (called only then; the
    vectors are float32, normalised for cosine) and saved to ``store``. ``model`` is recorded with a saved index
    so that ``evolve cache invalidate --model`` removes it along with the vectors it came from. ``reuse=False``
    builds anew from ``vectors()`` and replaces what memory and disk held under this name.
    """
    params = _params(config, n)
    name = index_name(fingerprint, config, n, seed)
    key = (name, bool(config.use_gpu))
    index = _INDEXES.get(key) if reuse else None
    if index is not None:
        STATS["memory"] += 1
        return index
    persist = store is not None and params[0] in PERSISTED
    if persist and reuse:
        index = _load(store, name, n)
        if index is not None:
            STATS["disk"] += 1
    if index is None:
        index = _build(vectors(), config, params, seed)
        STATS["built"] += 1
        if persist:
            import faiss

            meta = {"version": INDEX_VERSION, "model": model, "params": list(params), "n": n, "vectors": fingerprint}
            store.save(name, lambda path: faiss.write_index(index, str(path)), meta, expected_bytes=index_bytes(index))
    if config.use_gpu and params[0] != "hnsw":
        res = _gpu_resources()
        if res is not None:
            import faiss

            index = faiss.index_cpu_to_gpu(res, 0, index)
    _INDEXES.put(key, index, index_bytes(index))
    return index


def build_index(vectors: np.ndarray, config, *, seed: int = 0, fingerprint: str | None = None,
                store: DerivedStore | None = None, model: str | None = None):
    """:func:`get_index` over vectors already at hand (named by ``fingerprint``, else by hashing them in place)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return get_index(fingerprint or vectors_fingerprint(vectors), config, n=int(vectors.shape[0]),
                     vectors=lambda: vectors, seed=seed, store=store, model=model)


#: batches of at least this many queries are scored by a matrix product (faiss' BLAS path); faiss 1.15 sets
#: it to 128,000, so a trial's few hundred queries took its per-query path, 4-5x slower on a flat index here
BLAS_THRESHOLD = 20


def search_index(index, queries: np.ndarray, k: int, config) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, ids) per query; ids are -1 where fewer than ``k`` exist."""
    import faiss

    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = max(1, min(k, index.ntotal))
    if config.type == "hnsw":
        index.hnsw.efSearch = max(config.hnsw_ef_search, k)
        return index.search(queries, k)
    if config.type == "ivf":
        params = faiss.SearchParametersIVF(nprobe=config.ivf_nprobe)
        try:
            return index.search(queries, k, params=params)
        except TypeError:  # GPU index
            index.nprobe = config.ivf_nprobe
            return index.search(queries, k)
    return index.search(queries, k)
