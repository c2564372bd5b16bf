"""Chunkers behind one base class; chunk -> document mapping."""

from __future__ import annotations

from evolve.chunking._base import Chunk, Chunker, Tokenizer, load_tokenizer
from evolve.chunking._strategies import NoChunker, RecursiveChunker, SentenceChunker, TokenChunker, split_sentences

__all__ = [
    "CHUNKERS",
    "Chunk",
    "Chunker",
    "Tokenizer",
    "chunk_corpus",
    "create_chunker",
    "load_tokenizer",
    "split_sentences",
]

CHUNKERS: dict[str, type[Chunker]] = {
    "none": NoChunker,
    "tokens": TokenChunker,
    "sentences": SentenceChunker,
    "recursive": RecursiveChunker,
}


def create_chunker(config, model: str) -> Chunker:
    tokenizer = load_tokenizer(model) if config.strategy != "none" else Tokenizer(None)
    return CHUNKERS[config.strategy](config, tokenizer)


def chunk_corpus(corpus, config, model: str) -> list[Chunk]:
    """Chunks of every document, in corpus order."""
    chunker = create_chunker(config, model)
    out: list[Chunk] = []
    for doc in corpus.values():
        out.extend(chunker.chunk(doc))
    return out
