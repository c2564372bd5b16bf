"""Versions of the files derived from the embedding cache (persisted faiss indexes, BM25 statistics).

A low module that imports nothing: the cache (which prunes files of older versions) and the index and BM25 code
(which write them) both read these, so neither has to import the other. Bump a version when what a file name
covers or the file layout changes: files of an older version are then never found again, and ``evolve cache
prune`` removes them.
"""

from __future__ import annotations

__all__ = ["BM25_VERSION", "INDEX_VERSION"]

#: persisted faiss indexes (``<cache folder>/faiss/``)
INDEX_VERSION = "evolve-faiss-1"
#: BM25 term statistics (``<cache folder>/bm25/``): tokenisation or statistics layout (version 1 also kept
#: per-(k1, b) index folders, which ``evolve cache prune`` removes)
BM25_VERSION = "evolve-bm25-2"
