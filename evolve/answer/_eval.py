"""``evolve answer eval``: answers measured on a dataset's judged queries, through the path ``evolve serve`` answers
with (:meth:`evolve.pipeline.Pipeline.retrieve_passages`, then :class:`evolve.answer.Answerer`: the same packing,
prompt, checking and refusal), against the LLM named by ``answer.base_url`` / ``answer.model``.

What it measures (definitions in :mod:`evolve.answer.metrics`):

* **correctness** against reference answers where the dataset carries them (SQuAD-style sets, gold folders with
  answers): EM and F1 (SQuAD v1.1 for English, KorQuAD 1.0 for Korean), on the answerable variant, with the
  citation markers taken out of the answer first; a refusal scores 0;
* **citations** against the qrels, without an LLM: citation precision and recall;
* with ``judge``: **ALCE-style support**, the LLM judging whether each sentence's cited passages support it;
* **refusal**: each question is asked twice, as retrieved (answerable: a refusal is a false refusal) and with its
  judged-relevant documents taken out of its ranked list before packing (unanswerable: a refusal is right);
* **latency** of the answerable variant: time to the first token and total time per answer (packing, the LLM,
  checking; retrieval is batched for all questions first and not included), p50 and p95.

The questions: the split's queries with at least one relevant document; ``limit`` keeps a seeded sample of them
(``random.Random(seed).sample`` of the sorted ids, then sorted), so a small run is spread over the dataset rather
than its first articles.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "AnswerEval",
    "QueryAnswer",
    "answer_eval",
    "select_queries",
    "without_relevant",
    "strip_markers",
    "llm_judge",
]

#: a citation marker as the checked answer writes it ([3], [1, 2]); taken out before EM/F1
_MARKER = re.compile(r"\s*\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\]")


def strip_markers(text: str) -> str:
    """The answer without its citation markers (what EM/F1 compare with the references)."""
    return " ".join(_MARKER.sub("", text).split())


@dataclass
class QueryAnswer:
    """One question in one variant (``answerable`` or ``unanswerable``): the checked answer, its flags and
    timings, or the LLM's one-line ``error``."""

    qid: str
    question: str
    variant: str
    answer: str = ""
    citations: list[dict] = field(default_factory=list)
    refused: bool | None = None
    refusal: str | None = None
    grounded: bool | None = None
    unsupported_sentences: int = 0
    removed_markers: int = 0
    n_passages: int = 0
    em: float | None = None
    f1: float | None = None
    ttft_ms: float | None = None
    total_ms: float | None = None
    error: str | None = None
    claims: list = field(default_factory=list, repr=False)

    @property
    def flags(self) -> list[str]:
        out = []
        if self.error:
            out.append("error")
        if self.refused:
            out.append(f"refused:{self.refusal}")
        if self.grounded is False:
            out.append("ungrounded")
        if self.unsupported_sentences:
            out.append(f"unsupported:{self.unsupported_sentences}")
        if self.removed_markers:
            out.append(f"removed_markers:{self.removed_markers}")
        return out

    def record(self) -> dict[str, Any]:
        """A row of the per-query table."""
        return {
            "qid": self.qid,
            "variant": self.variant,
            "query": self.question,
            "answer": self.answer,
            "citations": [{"marker": c["marker"], "doc_id": c["doc_id"]} for c in self.citations],
            "flags": self.flags,
            "refused": self.refused,
            "grounded": self.grounded,
            "em": self.em,
            "f1": self.f1,
            "ttft_ms": self.ttft_ms,
            "total_ms": self.total_ms,
            "n_passages": self.n_passages,
            "error": self.error,
        }


@dataclass
class AnswerEval:
    """The outcome: ``metrics`` (one number each, None where undefined), the per-question ``rows`` and what
    made them."""

    metrics: dict[str, Any]
    rows: list[QueryAnswer]
    qids: list[str]
    llm: dict[str, Any]
    judge: dict[str, Any] | None = None


def select_queries(
    queries: dict[str, str], qrels: dict[str, dict[str, int]], limit: int | None, seed: int = 0
) -> list[str]:
    """The judged questions with at least one relevant document; a seeded sample of ``limit`` of them."""
    qids = sorted(q for q, rel in qrels.items() if q in queries and any(g > 0 for g in rel.values()))
    if limit is not None and limit < len(qids):
        qids = sorted(random.Random(seed).sample(qids, limit))
    return qids


def without_relevant(retrieval, relevant: set[str]):
    """The retrieval with the ``relevant`` documents taken out of its ranked list (the rest moves up, ranks
    renumbered): the unanswerable variant of a question. Nothing is re-indexed."""
    kept = [d for d in retrieval.docs if d.doc_id not in relevant]
    return replace(retrieval, docs=[replace(d, rank=i + 1) for i, d in enumerate(kept)])


def _ask(answerer, row: QueryAnswer, retrieval, corpus) -> QueryAnswer:
    from evolve.llm import LLMError

    first: list[float] = []
    t0 = time.perf_counter()

    def on_piece(piece: str) -> None:
        if piece and not first:
            first.append(time.perf_counter())

    try:
        result = answerer.answer(row.question, retrieval, corpus, on_piece=on_piece)
    except LLMError as err:
        row.error = " ".join(str(err).split())
        return row
    row.total_ms = round(1000.0 * (time.perf_counter() - t0), 3)
    row.ttft_ms = round(1000.0 * (first[0] - t0), 3) if first else None  # a refusal before the LLM: none
    row.answer, row.citations, row.refused, row.refusal = (
        result.answer,
        result.citations,
        result.refused,
        result.refusal,
    )
    row.grounded, row.removed_markers = result.grounded, result.removed_markers
    row.unsupported_sentences = len(result.unsupported_sentences)
    row.n_passages = int(result.usage.get("passages", 0) or 0)
    if not result.refused:
        row.claims = _claims(result)
    return row


def _claims(result) -> list:
    """The answer's sentences, each with the passages it cites, as the ALCE judge reads them."""
    from evolve.answer import sentence_citations
    from evolve.answer.metrics import Claim, format_passage

    by_marker = {c["marker"]: c for c in result.citations}
    out = []
    for sentence, markers in sentence_citations(result.answer):
        cited = [by_marker[m] for m in dict.fromkeys(markers) if m in by_marker]
        out.append(Claim(strip_markers(sentence), [format_passage(c["title"] or "", c["passage"]) for c in cited]))
    return out


def _score_answers(rows: list[QueryAnswer], references: dict[str, list[str]]) -> None:
    from evolve.answer._language import question_language
    from evolve.answer.metrics import answer_em_f1

    for row in rows:
        refs = references.get(row.qid)
        if row.variant != "answerable" or row.error or not refs:
            continue
        row.em, row.f1 = (0.0, 0.0) if row.refused else answer_em_f1(
            strip_markers(row.answer), list(refs), question_language(row.question))


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _metrics(rows: list[QueryAnswer], qrels: dict[str, dict[str, int]]) -> dict[str, Any]:
    from evolve.answer.metrics import CitedAnswer, citation_precision_recall, latency_summary, refusal_rates

    ans = [r for r in rows if r.variant == "answerable"]
    un = [r for r in rows if r.variant == "unanswerable"]
    ok = [r for r in ans if not r.error]
    cited = [CitedAnswer(r.qid, [c["doc_id"] for c in r.citations], bool(r.refused)) for r in ok]
    out: dict[str, Any] = {"n_queries": len(ans), "n_errors": sum(1 for r in rows if r.error)}
    out["em"] = _mean(r.em for r in ok)
    out["f1"] = _mean(r.f1 for r in ok)
    out["n_with_reference"] = sum(1 for r in ok if r.f1 is not None)
    out.update(citation_precision_recall(cited, qrels))
    out.update(
        refusal_rates([None if r.error else r.refused for r in ans], [None if r.error else r.refused for r in un])
    )
    answered = [r for r in ok if not r.refused]
    out["grounded_rate"] = _mean(1.0 if r.grounded else 0.0 for r in answered)
    out["unsupported_sentences"] = sum(r.unsupported_sentences for r in answered)
    out["removed_markers"] = sum(r.removed_markers for r in ok)
    out.update(latency_summary([r.ttft_ms for r in ok], [r.total_ms for r in ok]))
    return out


def llm_judge(client) -> tuple[Callable[[list[tuple[str, str]]], list[bool]], dict[str, Any]]:
    """An ALCE judge on the team's LLM (:meth:`~evolve.llm.ChatClient.choice_many`: one of the prompt's two
    words, forced in vLLM), with the prompt in the claim's language; and its counters (``failed``: replies with
    neither word, counted as "not supported")."""
    from evolve.answer._language import question_language
    from evolve.answer.prompts import load_support_prompt

    stats: dict[str, Any] = {"calls": 0, "failed": 0, "prompt": {}}

    def judge(pairs: list[tuple[str, str]]) -> list[bool]:
        prompts, yes = [], []
        for premise, claim in pairs:
            p = load_support_prompt(question_language(claim))
            stats["prompt"][p.lang] = p.provenance()
            prompts.append(p.messages(premise, claim))
            yes.append(p.choices[0])
        choices = list(dict.fromkeys(c for lang in stats["prompt"] for c in load_support_prompt(lang).choices))
        answers = client.choice_many(prompts, choices) if prompts else []
        stats["calls"] += len(answers)
        stats["failed"] += sum(1 for a in answers if a.data is None)
        return [a.data is not None and a.data["choice"] == y for a, y in zip(answers, yes)]

    return judge, stats


def answer_eval(
    pipeline,
    answerer,
    qrels: dict[str, dict[str, int]],
    *,
    references: dict[str, list[str]] | None = None,
    limit: int | None = None,
    seed: int = 0,
    parallel: int = 1,
    judge: bool = False,
    on_row: Callable[[QueryAnswer], None] | None = None,
) -> AnswerEval:
    """Answer ``limit`` (seeded) of the ``qrels`` questions twice (answerable, unanswerable) with ``answerer``
    from ``pipeline``'s passages and measure them (see the module). ``parallel`` questions are asked at once (the
    latency figures then include the LLM server's queue). Raises :class:`~evolve.errors.BackendError` when the
    LLM is not reachable or does not serve ``answer.model`` (before any question is asked)."""
    from evolve.errors import ConfigError

    if answerer.client is None:
        raise ConfigError(
            "answer.base_url and answer.model: expected the LLM to answer with (--set "
            "answer.base_url=URL --set answer.model=NAME), got none set"
        )
    llm = answerer.client.identity()
    ds = pipeline.dataset
    qids = select_queries(ds.queries, qrels, limit, seed)
    relevant = {q: {d for d, g in qrels[q].items() if g > 0} for q in qids}
    keep = answerer.config.max_passages
    depth = keep + max((len(r) for r in relevant.values()), default=0)
    retrievals = pipeline.retrieve_passages([ds.queries[q] for q in qids], depth, query_cache=pipeline.cache)
    jobs = []
    for q, r in zip(qids, retrievals):
        jobs.append((QueryAnswer(q, ds.queries[q], "answerable"), replace(r, docs=r.docs[:keep])))
        jobs.append((QueryAnswer(q, ds.queries[q], "unanswerable"), without_relevant(r, relevant[q])))

    def run(job):
        row = _ask(answerer, job[0], job[1], ds.corpus)
        if on_row is not None:
            on_row(row)
        return row

    with ThreadPoolExecutor(max_workers=max(1, int(parallel)), thread_name_prefix="evolve-answer-eval") as pool:
        rows = list(pool.map(run, jobs))
    if all(r.error for r in rows) and rows:
        from evolve.errors import BackendError

        raise BackendError(f"answer eval: every answer failed; the first: {rows[0].error}")
    _score_answers(rows, references or {})
    metrics = _metrics(rows, qrels)
    judged = None
    if judge:
        from evolve.answer.metrics import alce_support

        fn, stats = llm_judge(answerer.client)
        answered = [r.claims for r in rows if r.variant == "answerable" and not r.error and not r.refused]
        metrics.update(alce_support(answered, fn))
        judged = stats
    return AnswerEval(metrics, rows, qids, llm, judged)
