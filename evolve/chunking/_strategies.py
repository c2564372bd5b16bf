"""Chunking strategies: none, tokens, sentences (sentencex for English, kiwipiepy for Korean), recursive."""

from __future__ import annotations

import re
from functools import lru_cache

from evolve.chunking._base import Chunker

__all__ = ["NoChunker", "TokenChunker", "SentenceChunker", "RecursiveChunker"]


class NoChunker(Chunker):
    """Whole documents; the embedder truncates to ``embedding.max_length``."""

    def split(self, text):
        return [text]


class TokenChunker(Chunker):
    """Fixed windows of ``size`` tokens, ``overlap`` tokens shared."""

    def split(self, text):
        return self.token_windows(text)


@lru_cache(maxsize=1)
def _kiwi():
    from kiwipiepy import Kiwi

    return Kiwi()


@lru_cache(maxsize=1)
def _sentencex():
    from sentencex import segment

    return segment


_HANGUL = re.compile(r"[\uac00-\ud7a3]")


def split_sentences(text: str) -> list[str]:
    """Sentences, stripped, empty ones dropped.

    Text with Hangul goes through kiwipiepy's splitter (it also ends a sentence at a verb ending with no
    punctuation after it); other text through sentencex's English rules, which know abbreviations, so "Fig. 3",
    "Smith et al. found", "Dr. Jones", "e.g." and "3.5 vs. 4.2" do not end a sentence (a bare punctuation rule
    cut after each of them).
    """
    if _HANGUL.search(text):
        return [s.text for s in _kiwi().split_into_sents(text)]
    return [s.strip() for s in _sentencex()("en", text) if s.strip()]


class _Packer(Chunker):
    """Packs units (sentences, paragraphs, ...) greedily into chunks of at most ``size`` tokens."""

    def _pack(self, units: list[str]) -> list[str]:
        size, overlap = self.config.size, self.config.overlap
        chunks: list[str] = []
        cur: list[tuple[str, int]] = []
        cur_len = 0
        for unit in units:
            n = self.tokenizer.count(unit)
            if n > size:
                if cur:
                    chunks.append(" ".join(u for u, _ in cur))
                    cur, cur_len = [], 0
                chunks.extend(self.token_windows(unit))
                continue
            if cur_len + n > size and cur:
                chunks.append(" ".join(u for u, _ in cur))
                # carry trailing units worth up to `overlap` tokens into the next chunk
                keep, kept = [], 0
                for u, un in reversed(cur):
                    if kept + un > overlap:
                        break
                    keep.insert(0, (u, un))
                    kept += un
                # the carried overlap must leave room for the new unit: a chunk never exceeds `size`
                while keep and kept + n > size:
                    kept -= keep.pop(0)[1]
                cur, cur_len = keep, kept
            cur.append((unit, n))
            cur_len += n
        if cur:
            chunks.append(" ".join(u for u, _ in cur))
        return chunks


class SentenceChunker(_Packer):
    """Whole sentences packed up to ``size`` tokens; overlap in whole sentences."""

    def split(self, text):
        return self._pack([s.strip() for s in split_sentences(text) if s.strip()])


class RecursiveChunker(_Packer):
    """Paragraphs, then sentences, then tokens: the largest units that fit ``size``."""

    def split(self, text):
        units: list[str] = []
        for para in re.split(r"\n\s*\n", text):
            para = para.strip()
            if not para:
                continue
            if self.tokenizer.count(para) <= self.config.size:
                units.append(para)
            else:
                units.extend(s.strip() for s in split_sentences(para) if s.strip())
        return self._pack(units)
