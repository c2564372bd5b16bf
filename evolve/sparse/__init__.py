"""Sparse retrieval: BM25 (bm25s) with English, Korean, regex and script-detecting tokenizers.

Importing this package is cheap: bm25s, PyStemmer and kiwipiepy load on first use.
"""

from evolve.sparse._bm25 import BM25_VERSION, STATS, BM25Index, bm25_key, build_bm25, clear_memory
from evolve.sparse._tokenizers import KOREAN_TAGS, TOKENIZERS, get_tokenizer, is_korean, tokenize

__all__ = [
    "BM25Index",
    "build_bm25",
    "bm25_key",
    "clear_memory",
    "STATS",
    "BM25_VERSION",
    "TOKENIZERS",
    "KOREAN_TAGS",
    "get_tokenizer",
    "tokenize",
    "is_korean",
]
