"""``context_recall@T``: does the context the LLM would get hold a reference answer at all? An answer-aware
retrieval objective that needs no LLM.

For one query: the champion's passages are packed within ``T`` tokens by the packing code ``evolve serve`` uses
(:func:`evolve.answer._pack.pack`: rank order, one passage per document, at most ``answer.max_passages``, the
first one that does not fit truncated), counted with the local tokenizer ``answer.tokenizer`` (never a server's:
a tuning night needs no LLM, and trials counted by different tokenizers never compare). The query scores 1 when
a normalised reference answer occurs in a packed passage (its title or its text), else 0. The normalisation is
the one the references are scored under for EM/F1 (:func:`evolve.answer.metrics.normalize_for`, decided by the
question's language first): SQuAD v1.1's for English, matched at word boundaries (``cat`` is not found in ``concatenate``); KorQuAD 1.0's for Korean,
matched anywhere (a Korean answer is followed by its particle: ``서울`` in ``서울에서``).

Over a set of queries the score is the mean over the queries that have a reference answer; the others are not
scored (they have no per-query value).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from evolve.answer.metrics._qa import korquad_normalize, squad_normalize, uses_korquad

if TYPE_CHECKING:
    from evolve.answer._pack import Candidate
    from evolve.answer._tokens import TokenCounter

__all__ = [
    "CONTEXT_RECALL",
    "answer_in_context",
    "context_metric_budget",
    "context_recall",
    "context_recall_scores",
    "context_settings",
]

#: the metric's name stem: ``context_recall@2000`` is the metric at T = 2000 tokens
CONTEXT_RECALL = "context_recall"
_NAME = re.compile(rf"{CONTEXT_RECALL}@(\d+)")


def context_metric_budget(name: str) -> int | None:
    """T of a ``context_recall@T`` metric name; None for any other name."""
    m = _NAME.fullmatch(name)
    return int(m.group(1)) if m else None


def answer_in_context(texts: Iterable[str], references: Sequence[str], language: str | None = None) -> bool:
    """Whether a normalised reference answer occurs in one of ``texts`` (see the module docstring). ``language``
    is the question's: a Korean question is matched by KorQuAD's rules whatever its answer (:func:`uses_korquad`:
    "USCF" is found in "(USCF)에서는", which SQuAD's word-boundary match would miss). A reference that normalises
    to nothing (``"the"``) is never found."""
    korean = uses_korquad(references, language)
    norm = korquad_normalize if korean else squad_normalize
    refs = [r for r in (norm(ref) for ref in references) if r]
    if not refs:
        return False
    for text in texts:
        t = norm(text)
        if korean:
            if any(r in t for r in refs):
                return True
        elif any(f" {r} " in f" {t} " for r in refs):
            return True
    return False


def _counter(tokenizer: str | TokenCounter) -> TokenCounter:
    if isinstance(tokenizer, str):
        from evolve.answer._tokens import get_tokenizer

        return get_tokenizer(tokenizer)
    return tokenizer


def context_recall(
    passages: list[Candidate],
    references: Sequence[str],
    budget_tokens: int,
    tokenizer: str | TokenCounter,
    *,
    max_passages: int = 8,
    prompt_version: str = "1",
    language: str = "en",
) -> float:
    """1.0 when a normalised reference answer occurs in ``passages`` (candidates in rank order, as
    :func:`evolve.answer.candidates` gives them) packed within ``budget_tokens`` tokens, else 0.0.

    ``tokenizer``: a local tokenizer name (``answer.tokenizer``: ``minilm``, ``smollm2``, ``whitespace``, a path)
    or a :class:`~evolve.answer.TokenCounter`. ``language`` picks the prompt whose passage header is counted
    (the question's language). Empty ``references`` raise ValueError."""
    from evolve.answer._pack import pack
    from evolve.answer.prompts import load_answer_prompt

    if not references:
        raise ValueError("expected at least one reference answer, got none")
    prompt = load_answer_prompt(prompt_version, language)
    context = pack(passages, prompt, budget=budget_tokens, max_passages=max_passages, counter=_counter(tokenizer))
    return float(answer_in_context((f"{p.title} {p.text}" for p in context.passages), references, language))


def context_settings(answer) -> dict:
    """What ``context_recall`` depends on besides the retrieval and T, from an ``answer:`` config section: the
    local tokenizer, the passage cap and the prompt version (its passage header is counted). A study that tunes on
    ``context_recall`` keeps these in its identity: trials counted under other settings never compare."""
    return {"tokenizer": answer.tokenizer, "max_passages": answer.max_passages, "prompt_version": answer.prompt_version}


def context_recall_scores(pipe, qids: Sequence[str], budget_tokens: int, *, batch: int = 64) -> dict[str, float]:
    """Per query of ``qids`` that has a reference answer (``pipe.dataset.answers``): its ``context_recall`` at
    ``budget_tokens``, with the pipeline's ``answer:`` section (tokenizer, max_passages, prompt version).

    The passages are :meth:`evolve.pipeline.Pipeline.retrieve_passages`' (the serving path), with the query
    vectors in the pipeline's own cache (dataset queries, not what a person typed)."""
    from evolve.answer._language import question_language
    from evolve.answer._pack import candidates

    answers = pipe.dataset.answers
    scored = [q for q in qids if answers.get(q)]
    cfg = pipe.config.answer
    counter = _counter(cfg.tokenizer)
    corpus = pipe.dataset.corpus
    out: dict[str, float] = {}
    for i in range(0, len(scored), batch):
        part = scored[i : i + batch]
        texts = [pipe.dataset.queries[q] for q in part]
        retrievals = pipe.retrieve_passages(texts, cfg.max_passages, query_cache=pipe.cache)
        for q, text, retrieval in zip(part, texts, retrievals):
            out[q] = context_recall(
                candidates(retrieval, corpus),
                answers[q],
                budget_tokens,
                counter,
                max_passages=cfg.max_passages,
                prompt_version=cfg.prompt_version,
                language=question_language(text),
            )
    return out
