"""Packing the champion's passages into the answer's context: numbered ``[1]..[n]`` in rank order, each with its
title and source link, within a token budget.

Rules (each passage counted as the prompt shows it: ``[n] title (url)`` then its text; the question and the
instructions are outside the budget):

1. Candidates come in rank order, one per document, at most ``max_passages`` of them.
2. A passage that fits the tokens left is packed whole.
3. The first passage that does not fit is **truncated, not skipped**, when at least :data:`MIN_PART_TOKENS` tokens
   are left: it keeps its leading whole sentences that fit (the project's sentence splitter: sentencex, kiwipiepy
   for Korean), or, when not even its first sentence fits, the longest prefix of that sentence that does. Then
   packing stops: no lower-ranked passage is packed after a truncated one (or after one that found fewer than
   :data:`MIN_PART_TOKENS` tokens left).

   Why truncate rather than skip to a smaller lower-ranked passage: the ranking is the retrieval's judgement (and
   what is tuned), so the packed context is always a prefix of the ranked passages; ``context_recall@T`` then
   reads as "within the first T tokens of what the champion ranks".
4. Markers are 1..n in packing order, so marker i is the i-th ranked document that made it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evolve.answer._tokens import TokenCounter
    from evolve.answer.prompts import AnswerPrompt
    from evolve.passages import Retrieval

__all__ = ["Candidate", "Context", "MIN_PART_TOKENS", "Passage", "candidates", "pack"]

#: a truncated passage must keep at least this many tokens (header included), else packing just stops
MIN_PART_TOKENS = 32


@dataclass
class Candidate:
    """A document's passage before packing: its text, title, source link, rank and raw first-stage scores."""

    doc_id: str
    title: str
    url: str | None
    text: str
    rank: int
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class Passage:
    """A packed passage: marker ``[n]``, the (possibly truncated) text given to the LLM, its token count."""

    marker: int
    doc_id: str
    title: str
    url: str | None
    text: str
    rank: int
    tokens: int
    scores: dict[str, float] = field(default_factory=dict)
    truncated: bool = False

    def public(self) -> dict:
        """As the API shows it: ``{marker, doc_id, title, url, passage}``."""
        return {"marker": self.marker, "doc_id": self.doc_id, "title": self.title, "url": self.url,
                "passage": self.text}


@dataclass
class Context:
    """The packed passages, the tokens they take, the budget, and the tokenizer that counted."""

    passages: list[Passage]
    tokens: int
    budget: int
    tokenizer: str
    #: candidates offered that were not packed (or only partly): the budget or max_passages stopped them
    left_out: int = 0

    def rendered(self, prompt: AnswerPrompt) -> list[str]:
        return [prompt.render_passage(p.marker, p.title, p.url, p.text) for p in self.passages]

    def summary(self) -> dict:
        return {"passages": len(self.passages), "context_tokens": self.tokens, "budget": self.budget,
                "tokenizer": self.tokenizer, "truncated": sum(p.truncated for p in self.passages),
                "left_out": self.left_out}


def candidates(retrieval: Retrieval, corpus) -> list[Candidate]:
    """One candidate per retrieved document, in rank order (``corpus``: doc id -> Document). The source link is
    ``Document.metadata["url"]`` where the loader kept one."""
    out = []
    for d in retrieval.docs:
        doc = corpus[d.doc_id]
        url = (doc.metadata or {}).get("url")
        scores = {r: s for r in retrieval.retrievers if (s := d.raw_score(r)) is not None}
        out.append(Candidate(d.doc_id, doc.title, str(url) if url else None, d.passage(doc), d.rank, scores))
    return out


def _truncate(c: Candidate, marker: int, room: int, prompt: AnswerPrompt, counter: TokenCounter
              ) -> tuple[str, int] | None:
    """The longest head of ``c.text`` whose rendered passage fits ``room`` tokens (whole sentences, else a
    prefix of the first sentence), with its count; None when nothing fits."""
    from evolve.chunking import split_sentences

    def fits(text: str) -> tuple[bool, int]:
        n = counter.count_many([prompt.render_passage(marker, c.title, c.url, text)])[0]
        return n <= room, n

    sentences = [s for s in split_sentences(c.text) if s.strip()] or [c.text]
    counts = counter.count_many(sentences)
    header = counter.count_many([prompt.render_passage(marker, c.title, c.url, "")])[0]
    keep, used = 0, header
    while keep < len(sentences) and used + counts[keep] <= room:
        used += counts[keep]
        keep += 1
    while keep > 0:  # a joined text may count a token or two more than its sentences did apart
        ok, n = fits(" ".join(sentences[:keep]))
        if ok:
            return " ".join(sentences[:keep]), n
        keep -= 1
    first = sentences[0]
    chars = int(len(first) * max(0, room - header) / max(1, counts[0]))
    while chars > 0:
        piece = first[:chars]
        space = piece.rfind(" ")
        piece = (piece[:space] if space > 0 else piece).rstrip()  # at a word boundary where there is one
        ok, n = fits(piece)
        if ok and piece:
            return piece, n
        chars = int(chars * 0.8)
    return None


def pack(cands: list[Candidate], prompt: AnswerPrompt, *, budget: int, max_passages: int,
         counter: TokenCounter) -> Context:
    """Number and pack ``cands`` (rank order) into ``budget`` tokens, at most ``max_passages`` of them (see the
    module's rules)."""
    offered = cands[:max_passages]
    rendered = [prompt.render_passage(i + 1, c.title, c.url, c.text) for i, c in enumerate(offered)]
    counts, name = counter.counted(rendered) if rendered else ([], counter.name)
    packed: list[Passage] = []
    used = 0
    for i, (c, n) in enumerate(zip(offered, counts)):
        marker = i + 1
        if used + n <= budget:
            packed.append(Passage(marker, c.doc_id, c.title, c.url, c.text, c.rank, n, dict(c.scores)))
            used += n
            continue
        room = budget - used
        if room >= MIN_PART_TOKENS:
            got = _truncate(c, marker, room, prompt, counter)
            if got is not None:
                text, n2 = got
                packed.append(Passage(marker, c.doc_id, c.title, c.url, text, c.rank, n2, dict(c.scores), True))
                used += n2
        break
    left_out = len(cands) - sum(not p.truncated for p in packed)
    return Context(packed, used, budget, name, left_out)
