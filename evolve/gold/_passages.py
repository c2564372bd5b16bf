"""Passages to write gold questions from: sentence-packed spans of a document, sampled across the corpus.

A :class:`Passage` is a verbatim span of its document's ``full_text`` (title + text), so the quoted passage kept
with a gold query occurs in the document as long as the document does, whatever the pipeline's chunking.
Sentences come from :func:`evolve.chunking.split_sentences` (kiwipiepy for Korean) and are packed up to ``size``
tokens, as the ``sentences`` chunker does; a sentence longer than that is cut at token boundaries. Tokens are
the MiniLM tokenizer's, except in Korean text, where they are kiwipiepy morphemes: MiniLM's English WordPiece
spends one to two tokens on every Hangul jamo, and would cut Korean passages to a sentence.

:func:`sample_passages` stratifies by source, folder, length and language: documents of every stratum are
interleaved in proportion to the stratum's size (a seeded systematic order), one passage per document per round,
at most ``max_per_doc`` rounds; so any prefix of the sample mirrors the corpus, and no document dominates.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from evolve.datasets import Dataset, Document

__all__ = ["Passage", "passages_of", "sample_passages", "stratum_of", "DEFAULT_PASSAGE_TOKENS"]

#: passage size in MiniLM tokens: a paragraph, long enough to ask about, short enough for a small model
DEFAULT_PASSAGE_TOKENS = 128
#: a passage under this many tokens is too thin to ask a question about
MIN_PASSAGE_TOKENS = 16
TOKENIZER_MODEL = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Passage:
    doc_id: str
    index: int  # passage number within its document
    start: int  # character span in the document's full_text
    end: int
    text: str
    lang: str  # "ko" or "en", by the passage's own script
    stratum: tuple[str, str, str, str]  # (source, folder, length, lang) of the document


def _lang(text: str) -> str:
    from evolve.gold._filters import is_korean_text

    return "ko" if is_korean_text(text) else "en"


def stratum_of(doc: Document) -> tuple[str, str, str, str]:
    """(source, folder, length bucket, language) of a document; metadata never changes its content."""
    meta = doc.metadata or {}
    source = str(meta.get("source") or meta.get("format") or "")
    path = meta.get("path")
    folder = str(PurePosixPath(str(path).replace("\\", "/")).parent) if path else ""
    n = len(doc.full_text)
    length = "short" if n < 1000 else "medium" if n < 4000 else "long"
    return source, folder, length, _lang(doc.full_text[:4000])


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    from evolve.chunking import split_sentences

    spans, pos = [], 0
    for sent in split_sentences(text):
        s = sent.strip()
        if not s:
            continue
        at = text.find(s, pos)
        if at < 0:  # a splitter that normalised the text: give up on exact sentences for the rest
            rest = text[pos:].strip()
            if rest:
                at = text.find(rest, pos)
                spans.append((at, at + len(rest)))
            break
        spans.append((at, at + len(s)))
        pos = at + len(s)
    return spans


def _token_offsets(text: str) -> list[tuple[int, int]]:
    """Character spans of the tokens of ``text``: kiwipiepy morphemes for Korean, MiniLM tokens otherwise."""
    from evolve.gold._filters import is_korean_text

    if is_korean_text(text):
        from evolve.sparse._tokenizers import _get_kiwi

        return [(t.start, t.start + t.len) for t in _get_kiwi().tokenize(text)]
    from evolve.chunking import load_tokenizer

    return load_tokenizer(TOKENIZER_MODEL).offsets(text)


def passages_of(doc: Document, size: int = DEFAULT_PASSAGE_TOKENS) -> list[tuple[int, int]]:
    """Character spans of ``doc.full_text``: consecutive sentences packed up to ``size`` tokens, none under
    :data:`MIN_PASSAGE_TOKENS`."""
    text = doc.full_text
    units: list[tuple[int, int, int]] = []  # start, end, tokens
    for a, b in _sentence_spans(text):
        offsets = _token_offsets(text[a:b])
        if len(offsets) <= size:
            units.append((a, b, len(offsets)))
            continue
        for i in range(0, len(offsets), size):  # one over-long sentence: token windows
            window = offsets[i : i + size]
            units.append((a + window[0][0], a + window[-1][1], len(window)))
    out: list[tuple[int, int]] = []
    cur_start, cur_end, cur_n = None, None, 0
    for a, b, n in units:
        if cur_start is not None and cur_n + n > size:
            out.append((cur_start, cur_end, cur_n))
            cur_start, cur_n = None, 0
        if cur_start is None:
            cur_start = a
        cur_end, cur_n = b, cur_n + n
    if cur_start is not None:
        out.append((cur_start, cur_end, cur_n))
    return [(a, b) for a, b, n in out if n >= MIN_PASSAGE_TOKENS]


def _doc_order(dataset: Dataset, seed: int) -> list[str]:
    """Document ids in a seeded order that interleaves strata in proportion to their size."""
    rng = random.Random(seed)
    strata: dict[tuple, list[str]] = {}
    for doc_id in sorted(dataset.corpus):
        strata.setdefault(stratum_of(dataset.corpus[doc_id]), []).append(doc_id)
    keyed = []
    for key in sorted(strata):
        ids = strata[key]
        rng.shuffle(ids)
        offset = rng.random()
        keyed.extend(((j + offset) / len(ids), rng.random(), d) for j, d in enumerate(ids))
    keyed.sort()
    return [d for _, _, d in keyed]


def sample_passages(
    dataset: Dataset,
    n: int,
    *,
    seed: int = 0,
    lang: str = "auto",
    max_per_doc: int = 2,
    size: int = DEFAULT_PASSAGE_TOKENS,
    exclude: set[tuple[str, str]] | None = None,
    doc_ids: set[str] | None = None,
) -> list[Passage]:
    """Up to ``n`` passages, stratified (see the module doc). ``lang`` ``ko``/``en`` keeps passages in that
    language only; ``exclude`` holds (doc id, passage text) pairs already used; ``doc_ids`` restricts the
    documents sampled from."""
    exclude = exclude or set()
    order = [d for d in _doc_order(dataset, seed) if doc_ids is None or d in doc_ids]
    spans: dict[str, list[tuple[int, int]]] = {}
    taken: list[Passage] = []

    def candidates(doc_id: str) -> Iterator[tuple[int, tuple[int, int]]]:
        if doc_id not in spans:
            found = list(enumerate(passages_of(dataset.corpus[doc_id], size)))
            random.Random(zlib.crc32(f"{seed}:{doc_id}".encode())).shuffle(found)
            spans[doc_id] = found
        yield from spans[doc_id]

    used: dict[str, int] = {}
    for _round in range(max(1, max_per_doc)):
        for doc_id in order:
            if len(taken) >= n:
                return taken
            if used.get(doc_id, 0) > _round:
                continue
            doc = dataset.corpus[doc_id]
            text = doc.full_text
            picked = {p.index for p in taken if p.doc_id == doc_id}
            for idx, (a, b) in candidates(doc_id):
                if idx in picked:
                    continue
                ptext = text[a:b]
                plang = _lang(ptext)
                if (lang != "auto" and plang != lang) or (doc_id, ptext) in exclude:
                    continue
                taken.append(Passage(doc_id, idx, a, b, ptext, plang, stratum_of(doc)))
                used[doc_id] = used.get(doc_id, 0) + 1
                break
            else:
                used[doc_id] = max_per_doc  # nothing left in this document
    return taken
