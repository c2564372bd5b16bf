"""Sparse retrieval: BM25 (bm25s) with English, Korean, regex and script-detecting tokenizers.

Importing this package is cheap: bm25s, PyStemmer and kiwipiepy load on first use.
"""

from evolve.sparse._bm25 import (
    BM25_VERSION,
    STATS,
    BM25Index,
    TermStats,
    bm25_key,
    build_bm25,
    clear_memory,
    term_stats,
    texts_digest,
)
from evolve.sparse._tokenizers import (
    KOREAN_TAGS,
    TOKENIZERS,
    get_tokenizer,
    is_korean,
    tokenize,
)

__all__ = [
    "BM25_VERSION",
    "KOREAN_TAGS",
    "STATS",
    "TOKENIZERS",
    "BM25Index",
    "TermStats",
    "bm25_key",
    "build_bm25",
    "clear_memory",
    "get_tokenizer",
    "is_korean",
    "term_stats",
    "texts_digest",
    "tokenize",
]
