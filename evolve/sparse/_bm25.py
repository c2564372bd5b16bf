"""BM25 over chunk texts with bm25s, cached per (chunk texts, tokenizer, k1, b) in memory and on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evolve.sparse._tokenizers import bm25s_module, get_tokenizer

if TYPE_CHECKING:
    from evolve.cache import EmbeddingCache
    from evolve.config import SparseConfig

__all__ = ["BM25_VERSION", "STATS", "BM25Index", "bm25_key", "build_bm25", "clear_memory"]

log = logging.getLogger("evolve.sparse")

#: bump when tokenisation or index layout changes: old on-disk indexes are then simply not found
BM25_VERSION = "evolve-bm25-1"
#: bm25s scoring variant (Lucene's BM25, as in Anserini and the published bm25s numbers)
METHOD = "lucene"

#: how each index came to be in this process: ``built`` (tokenised and indexed), ``disk`` (loaded from the
#: on-disk copy), ``memory`` (served from the in-process LRU); ``tokenized`` counts corpus tokenisations
STATS = {"built": 0, "disk": 0, "memory": 0, "tokenized": 0}

_MEMORY_ITEMS = 8
_indexes: OrderedDict[str, BM25Index] = OrderedDict()
_tokens: OrderedDict[tuple[str, str], list[list[str]]] = OrderedDict()
_lock = threading.RLock()


def _texts_digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def bm25_key(texts_digest: str, tokenizer: str, k1: float, b: float) -> str:
    """sha256 over version, scoring method, tokenizer, k1, b and the digest of the chunk texts."""
    blob = json.dumps(
        {"v": BM25_VERSION, "method": METHOD, "tokenizer": tokenizer, "k1": float(k1), "b": float(b), "texts": texts_digest},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class BM25Index:
    """A bm25s index over ``n_docs`` chunk texts. :meth:`search` returns chunk indices, best first."""

    def __init__(self, model, tokenizer: str, n_docs: int, key: str, source: str):
        self.model = model
        self.tokenizer = tokenizer
        self.n_docs = n_docs
        self.key = key
        #: where this instance came from: 'built', 'disk' or 'memory'
        self.source = source

    def search(self, query_texts: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)`` of shape ``(len(query_texts), k)``: float32 BM25 scores and int64 chunk indices.

        Rows are best first; slots past the documents that match at least one query term are ``-1`` (score 0).
        """
        n_q = len(query_texts)
        k = int(k)
        scores = np.zeros((n_q, k), dtype=np.float32)
        ids = np.full((n_q, k), -1, dtype=np.int64)
        if n_q == 0 or k <= 0 or self.n_docs == 0:
            return scores, ids
        tokens = get_tokenizer(self.tokenizer)(list(query_texts))
        kk = min(k, self.n_docs)
        res_ids, res_scores = self.model.retrieve(
            tokens, k=kk, show_progress=False, return_as="tuple", n_threads=0
        )
        res_ids = np.asarray(res_ids, dtype=np.int64)
        res_scores = np.asarray(res_scores, dtype=np.float32)
        hit = res_scores > 0
        ids[:, :kk] = np.where(hit, res_ids, -1)
        scores[:, :kk] = np.where(hit, res_scores, 0.0)
        return scores, ids

    def __repr__(self) -> str:
        return f"BM25Index({self.tokenizer}, n_docs={self.n_docs}, source={self.source})"


def _disk_dir(cache: EmbeddingCache | None) -> Path | None:
    """``<folder of the cache's SQLite file>/bm25``, or None for a cache without a local file."""
    path = getattr(cache, "_path", None) if cache is not None else None
    if path is None:
        return None
    return Path(path).parent / "bm25"


def _load(folder: Path, n_docs: int):
    bm25s = bm25s_module()

    meta_f = folder / "evolve.json"
    if not meta_f.is_file():
        return None
    try:
        meta = json.loads(meta_f.read_text())
        if meta.get("version") != BM25_VERSION or meta.get("n_docs") != n_docs:
            return None
        model = bm25s.BM25.load(str(folder), show_progress=False, verbosity=0)
    except Exception as exc:  # damaged copy: rebuild it
        log.warning("BM25 index %s unreadable (%s); rebuilding it", folder.name, " ".join(str(exc).split())[:120])
        return None
    return model


def _save(model, root: Path, key: str, meta: dict) -> None:
    """Write to a temp folder beside the target, then rename it into place (atomic)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}-", dir=root))
    except OSError as exc:
        log.warning("BM25 index not saved to %s: %s", root, exc)
        return
    try:
        model.save(str(tmp), show_progress=False)
        (tmp / "evolve.json").write_text(json.dumps(meta, sort_keys=True))
        try:
            os.replace(tmp, root / key)
        except OSError:
            pass  # another process saved the same index first
    except Exception as exc:  # pragma: no cover - disk trouble: the in-memory index still works
        log.warning("BM25 index not saved to %s: %s", root, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _tokens_file(root: Path | None, digest: str, tokenizer: str) -> Path | None:
    if root is None:
        return None
    name = hashlib.sha256(f"{BM25_VERSION}\0{tokenizer}\0{digest}".encode()).hexdigest()
    return root / "tokens" / f"{name}.json.gz"


def _corpus_tokens(texts: list[str], digest: str, tokenizer: str, root: Path | None) -> list[list[str]]:
    """Tokenised chunks, kept per (texts, tokenizer) in memory and beside the indexes on disk, so trials that
    vary only k1/b tokenise once (Korean morphological analysis is the slow part of building)."""
    import gzip

    key = (digest, tokenizer)
    with _lock:
        toks = _tokens.get(key)
        if toks is not None:
            _tokens.move_to_end(key)
            return toks
    f = _tokens_file(root, digest, tokenizer)
    toks = None
    if f is not None and f.is_file():
        try:
            toks = json.loads(gzip.decompress(f.read_bytes()))
            if not isinstance(toks, list) or len(toks) != len(texts):
                toks = None
        except (OSError, ValueError, EOFError):
            toks = None
    if toks is None:
        toks = get_tokenizer(tokenizer)(texts)
        with _lock:
            STATS["tokenized"] += 1
        if f is not None:
            from evolve._io import atomic_write_bytes

            try:
                atomic_write_bytes(f, gzip.compress(json.dumps(toks, ensure_ascii=False).encode(), 5))
            except OSError as exc:  # pragma: no cover - disk trouble
                log.warning("BM25 tokens not saved to %s: %s", f, exc)
    with _lock:
        _tokens[key] = toks
        while len(_tokens) > 4:
            _tokens.popitem(last=False)
    return toks


def build_bm25(chunk_texts: list[str], cfg: SparseConfig, cache: EmbeddingCache | None = None) -> BM25Index:
    """The BM25 index of ``chunk_texts`` for ``cfg`` (tokenizer, k1, b).

    Served from the per-process LRU when this process built or loaded it before, else from the on-disk copy
    under ``<cache folder>/bm25/<key>/``, else built (and saved there when the cache has a local file).
    """
    texts = list(chunk_texts)
    get_tokenizer(cfg.tokenizer)  # fail fast on an unknown name
    digest = _texts_digest(texts)
    key = bm25_key(digest, cfg.tokenizer, cfg.k1, cfg.b)
    with _lock:
        idx = _indexes.get(key)
        if idx is not None:
            _indexes.move_to_end(key)
            STATS["memory"] += 1
            return BM25Index(idx.model, idx.tokenizer, idx.n_docs, key, "memory")
    root = _disk_dir(cache)
    model = _load(root / key, len(texts)) if root is not None and (root / key).is_dir() else None
    source = "disk"
    if model is None:
        bm25s = bm25s_module()
        source = "built"
        tokens = _corpus_tokens(texts, digest, cfg.tokenizer, root)
        model = bm25s.BM25(k1=float(cfg.k1), b=float(cfg.b), method=METHOD)
        if texts:
            model.index(tokens, show_progress=False)
        if root is not None and texts:
            meta = {"version": BM25_VERSION, "tokenizer": cfg.tokenizer, "k1": cfg.k1, "b": cfg.b,
                    "method": METHOD, "n_docs": len(texts), "texts_sha256": digest}
            _save(model, root, key, meta)
    idx = BM25Index(model, cfg.tokenizer, len(texts), key, source)
    with _lock:
        STATS[source] += 1
        _indexes[key] = idx
        while len(_indexes) > _MEMORY_ITEMS:
            _indexes.popitem(last=False)
    return idx


def clear_memory() -> None:
    """Forget the in-process indexes and token lists (the on-disk copies stay)."""
    with _lock:
        _indexes.clear()
        _tokens.clear()
