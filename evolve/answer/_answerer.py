"""One answer from the champion's passages: pack, prompt, ask the team's LLM (streamed), check, refuse.

:meth:`Answerer.prepare` does everything before the LLM (language, prompt, packing, the refusals that need no
LLM); the caller streams ``prepared.messages`` (:meth:`evolve.llm.ChatClient.stream` in a thread, ``astream`` on an
event loop, as ``evolve serve`` does) and hands the text to :meth:`Answerer.finish`. :meth:`Answerer.answer` is
the two with a blocking stream in between (``evolve answer eval``).

Refusal (``refused: true``, the fixed line in the question's language) when:

* retrieval returned nothing (``refusal: "no_passages"``; the LLM is not asked);
* ``answer.min_score`` is set and no packed passage's raw first-stage score reaches it (``"min_score"``; the LLM
  is not asked). The score read is ``answer.min_score_on``: the dense cosine (``dense``, the default where the
  pipeline has a dense retriever) or the BM25 score (``sparse``): fused scores are rank-based or min-max per
  query and say nothing absolute;
* the model's answer begins with the fixed line (``"model"``; see :mod:`evolve.answer._check`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evolve.answer._check import check_answer
from evolve.answer._pack import Context, candidates, pack
from evolve.errors import ConfigError

if TYPE_CHECKING:
    from evolve.answer.prompts import AnswerPrompt
    from evolve.config import AnswerConfig
    from evolve.llm import ChatClient, StreamResult
    from evolve.passages import Retrieval

__all__ = ["Answerer", "AnswerResult", "Prepared"]


@dataclass
class Prepared:
    """What goes to the LLM for one question, or why nothing does (``refusal``)."""

    question: str
    language: str
    prompt: AnswerPrompt
    context: Context
    messages: list[dict] | None
    refusal: str | None = None
    best_score: float | None = None

    @property
    def passages(self) -> list[dict]:
        """The packed passages as the API shows them (the ``retrieval`` event)."""
        return [p.public() for p in self.context.passages]


@dataclass
class AnswerResult:
    """One checked answer. :meth:`body` is the answer part of ``/v1/answer``'s response."""

    answer: str
    citations: list[dict]
    refused: bool
    grounded: bool
    unsupported_sentences: list[str]
    language: str
    removed_markers: int
    refusal: str | None
    ttft_ms: float | None
    usage: dict[str, Any] = field(default_factory=dict)
    cited_doc_ids: list[str] = field(default_factory=list)
    generate_seconds: float = 0.0

    def body(self) -> dict[str, Any]:
        return {"answer": self.answer, "citations": self.citations, "refused": self.refused,
                "grounded": self.grounded, "unsupported_sentences": self.unsupported_sentences,
                "removed_markers": self.removed_markers, "refusal": self.refusal, "language": self.language,
                "ttft_ms": self.ttft_ms, "usage": self.usage}

    def ubi(self) -> dict[str, Any]:
        """What the UBI query record keeps of it (ids and flags: no text)."""
        return {"cited": self.cited_doc_ids, "refused": self.refused, "grounded": self.grounded,
                "refusal": self.refusal, "removed_markers": self.removed_markers,
                "unsupported": len(self.unsupported_sentences)}


class Answerer:
    """Answers questions from retrieved passages with one ``answer:`` config. ``client`` defaults to a
    :class:`~evolve.llm.ChatClient` on ``answer.base_url`` / ``answer.model`` (None when they are unset: then
    only :meth:`prepare` works, for offline figures)."""

    def __init__(self, config: AnswerConfig, *, client: ChatClient | None = None):
        self.config = config
        if client is None and config.configured:
            from evolve.llm import ChatClient

            client = ChatClient(config.base_url, config.model, api_key_env=config.api_key_env,
                                timeout=config.timeout, max_retries=config.max_retries,
                                stream_retries=config.max_retries, concurrency=8, json_mode=False,
                                key_field="answer.api_key_env")
        self.client = client
        self._counter = None

    @property
    def counter(self):
        """The served model's tokenizer where the server offers ``/tokenize``, else ``answer.tokenizer``."""
        if self._counter is None:
            from evolve.answer._tokens import ServerTokenCounter, get_tokenizer

            local = get_tokenizer(self.config.tokenizer)
            self._counter = ServerTokenCounter(self.client, local) if self.client is not None else local
        return self._counter

    def _score_on(self, retrieval: Retrieval) -> str:
        on = self.config.min_score_on
        if on == "auto":
            return "dense" if "dense" in retrieval.retrievers else "sparse"
        if on not in retrieval.retrievers:
            raise ConfigError(f"answer.min_score_on: expected a retriever the champion runs "
                              f"({', '.join(retrieval.retrievers)}), got '{on}'")
        return on

    def prepare(self, question: str, retrieval: Retrieval, corpus, *, k: int | None = None) -> Prepared:
        """Language, prompt and packed context for ``question``; ``refusal`` set when the LLM is not to be asked.
        ``k`` caps the passages below ``answer.max_passages``."""
        from evolve.answer._language import question_language
        from evolve.answer.prompts import load_answer_prompt

        cfg = self.config
        lang = question_language(question)
        prompt = load_answer_prompt(cfg.prompt_version, lang)
        cands = candidates(retrieval, corpus)
        limit = cfg.max_passages if k is None else min(k, cfg.max_passages)
        context = pack(cands, prompt, budget=cfg.context_tokens, max_passages=limit, counter=self.counter)
        prepared = Prepared(question, lang, prompt, context, None)
        if not context.passages:
            prepared.refusal = "no_passages"
            return prepared
        if cfg.min_score is not None:
            on = self._score_on(retrieval)
            scores = [p.scores[on] for p in context.passages if on in p.scores]
            prepared.best_score = max(scores) if scores else None
            if prepared.best_score is None or prepared.best_score < cfg.min_score:
                prepared.refusal = "min_score"
                return prepared
        prepared.messages = prompt.messages(question, context.rendered(prompt))
        return prepared

    def finish(self, prepared: Prepared, text: str | None, stream: StreamResult | None = None) -> AnswerResult:
        """Check the model's ``text`` (None: the LLM was not asked) and build the result."""
        from evolve.answer.prompts import not_found_lines

        cfg = self.config
        line = prepared.prompt.not_found
        usage: dict[str, Any] = {"model": cfg.model, "prompt_version": prepared.prompt.version,
                                 **prepared.context.summary()}
        if prepared.refusal is not None:
            usage["best_score"] = prepared.best_score
            return AnswerResult(line, [], True, True, [], prepared.language, 0, prepared.refusal, None, usage)
        checked = check_answer(text or "", len(prepared.context.passages), not_found_lines(cfg.prompt_version).values(),
                               refusal_text=line)
        by_marker = {p.marker: p for p in prepared.context.passages}
        cited = [by_marker[m] for m in checked.cited]
        if stream is not None:
            usage.update({"prompt_tokens": stream.usage.get("prompt_tokens"),
                          "completion_tokens": stream.usage.get("completion_tokens"),
                          "finish_reason": stream.finish_reason})
        ttft = None if stream is None or stream.ttft is None else round(1000.0 * stream.ttft, 3)
        return AnswerResult(checked.text, [p.public() for p in cited], checked.refused, checked.grounded,
                            checked.unsupported_sentences, prepared.language, checked.removed_markers,
                            "model" if checked.refused else None, ttft, usage,
                            list(dict.fromkeys(p.doc_id for p in cited)),
                            0.0 if stream is None else stream.seconds)

    def answer(self, question: str, retrieval: Retrieval, corpus, *, k: int | None = None,
               on_piece=None) -> AnswerResult:
        """Prepare, stream the LLM's answer in this thread (``on_piece(text)`` per piece), check. Raises
        :class:`~evolve.llm.LLMError` when the LLM fails and :class:`~evolve.errors.ConfigError` when no LLM is
        configured."""
        prepared = self.prepare(question, retrieval, corpus, k=k)
        if prepared.refusal is not None:
            return self.finish(prepared, None)
        if self.client is None:
            raise ConfigError("answer.base_url and answer.model: expected the LLM to answer with, got none set")
        t0 = time.perf_counter()
        stream = self.client.stream(prepared.messages, max_tokens=self.config.max_tokens,
                                    temperature=self.config.temperature)
        for piece in stream:
            if on_piece is not None:
                on_piece(piece)
        result = self.finish(prepared, stream.result.text, stream.result)
        result.generate_seconds = time.perf_counter() - t0
        return result

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
