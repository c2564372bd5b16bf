"""The chunker extension point and the token counter chunk sizes are measured with."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evolve.config import ChunkingConfig
    from evolve.datasets import Document

__all__ = ["Chunk", "Chunker", "Tokenizer", "load_tokenizer"]


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    index: int
    text: str


class Tokenizer:
    """The embedding model's tokenizer (``tokenizers`` library: no torch), or whitespace tokens as a fallback."""

    def __init__(self, path: str | None):
        self._tok = None
        if path is not None:
            from pathlib import Path

            f = Path(path) / "tokenizer.json"
            if f.is_file():
                from tokenizers import Tokenizer as HFTokenizer

                self._tok = HFTokenizer.from_file(str(f))
                self._tok.no_truncation()
                self._tok.no_padding()

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the tokens of ``text`` (special tokens excluded)."""
        if self._tok is None:
            import re

            return [m.span() for m in re.finditer(r"\S+", text)]
        enc = self._tok.encode(text, add_special_tokens=False)
        return [tuple(o) for o in enc.offsets]

    def count(self, text: str) -> int:
        return len(self.offsets(text))


@lru_cache(maxsize=8)
def load_tokenizer(model: str) -> Tokenizer:
    """Tokenizer of an embedding model by name or path; whitespace tokens when the model has no tokenizer.json
    (HTTP-served models)."""
    from evolve.embedders import resolve_model_path
    from evolve.errors import ModelNotFoundError

    try:
        return Tokenizer(str(resolve_model_path(model)))
    except ModelNotFoundError:
        return Tokenizer(None)


class Chunker(abc.ABC):
    """Splits a document into chunks.

    Contract: :meth:`split` returns the chunk texts of one document's full text, in order, none empty; every
    chunk is at most ``config.size`` tokens of the embedding model's tokenizer (a single sentence longer than
    that is cut by tokens); consecutive chunks share about ``config.overlap`` tokens where the strategy allows.
    A chunker is deterministic: the same text and config always give the same chunks (the embedding cache
    relies on it).
    """

    def __init__(self, config: ChunkingConfig, tokenizer: Tokenizer):
        self.config = config
        self.tokenizer = tokenizer

    @abc.abstractmethod
    def split(self, text: str) -> list[str]:
        """Chunk texts of one document."""

    def chunk(self, doc: Document) -> list[Chunk]:
        texts = [t for t in self.split(doc.full_text) if t.strip()] or [doc.full_text]
        return [Chunk(doc.id, i, t) for i, t in enumerate(texts)]

    # helpers shared by strategies -------------------------------------------------------------------------
    def token_windows(self, text: str) -> list[str]:
        """Fixed windows of ``size`` tokens with ``overlap`` tokens shared, cut at token boundaries."""
        spans = self.tokenizer.offsets(text)
        size, overlap = self.config.size, self.config.overlap
        if len(spans) <= size:
            return [text.strip()]
        out, start = [], 0
        while start < len(spans):
            end = min(start + size, len(spans))
            piece = text[spans[start][0] : spans[end - 1][1]].strip()
            # a window cut inside a word can re-tokenize into more tokens ("##ing" alone becomes "in ##g"):
            # shrink it until it fits
            while end - start > 1 and self.tokenizer.count(piece) > size:
                end -= 1
                piece = text[spans[start][0] : spans[end - 1][1]].strip()
            out.append(piece)
            if end == len(spans):
                break
            start = max(start + 1, end - overlap)
        return out
