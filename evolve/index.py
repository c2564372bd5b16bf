"""faiss indexes over chunk vectors: flat, HNSW, IVF; on the GPU when faiss-gpu and a GPU are present.

Built indexes are kept per process (keyed by the vectors' fingerprint and the index parameters), so trials that
change only retrieval-side settings reuse them.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

__all__ = ["build_index", "search_index", "vectors_fingerprint", "clear_index_cache"]

_INDEXES: OrderedDict[tuple, object] = OrderedDict()
_MAX_CACHED = 8


def vectors_fingerprint(vectors: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(vectors).tobytes(), digest_size=16).hexdigest() + f":{vectors.shape}"


def clear_index_cache() -> None:
    _INDEXES.clear()


def _gpu_resources():
    import faiss

    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return None
    return faiss.StandardGpuResources()


def build_index(vectors: np.ndarray, config, *, seed: int = 0, fingerprint: str | None = None):
    """An inner-product faiss index over ``vectors`` (float32, normalised for cosine). Cached per process."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    kind = config.type
    params: tuple = (kind,)
    if kind == "hnsw":
        params += (config.hnsw_m, config.hnsw_ef_construction)
    elif kind == "ivf":
        nlist = max(1, min(config.ivf_nlist, n // 39 or 1))
        params += (nlist,)
    key = (fingerprint or vectors_fingerprint(vectors), params, seed, config.use_gpu)
    if key in _INDEXES:
        _INDEXES.move_to_end(key)
        return _INDEXES[key]
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
    if config.use_gpu and kind != "hnsw":
        res = _gpu_resources()
        if res is not None:
            import faiss

            index = faiss.index_cpu_to_gpu(res, 0, index)
    index.add(vectors)
    _INDEXES[key] = index
    while len(_INDEXES) > _MAX_CACHED:
        _INDEXES.popitem(last=False)
    return index


def search_index(index, queries: np.ndarray, k: int, config) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, ids) per query; ids are -1 where fewer than ``k`` exist."""
    import faiss

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
