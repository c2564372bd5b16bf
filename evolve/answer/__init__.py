"""Answers from the champion's passages, grounded and cited: packing within a token budget (:mod:`._pack`),
token counting (:mod:`._tokens`), the versioned prompts (:mod:`.prompts`), citation checking and refusal
(:mod:`._check`), the question's language (:mod:`._language`), and the whole of one answer (:mod:`._answerer`).
It never prints. The passages come from :meth:`evolve.pipeline.Pipeline.retrieve_passages`.

Names load on first use (``evolve --help`` stays instant).
"""

from __future__ import annotations

_EXPORTS = {
    "Answerer": "evolve.answer._answerer",
    "AnswerResult": "evolve.answer._answerer",
    "Prepared": "evolve.answer._answerer",
    "Candidate": "evolve.answer._pack",
    "Context": "evolve.answer._pack",
    "MIN_PART_TOKENS": "evolve.answer._pack",
    "Passage": "evolve.answer._pack",
    "candidates": "evolve.answer._pack",
    "pack": "evolve.answer._pack",
    "Checked": "evolve.answer._check",
    "check_answer": "evolve.answer._check",
    "is_refusal": "evolve.answer._check",
    "sentence_citations": "evolve.answer._check",
    "question_language": "evolve.answer._language",
    "LocalTokenizer": "evolve.answer._tokens",
    "ServerTokenCounter": "evolve.answer._tokens",
    "TokenCounter": "evolve.answer._tokens",
    "get_tokenizer": "evolve.answer._tokens",
    "tokenizer_names": "evolve.answer._tokens",
    "AnswerPrompt": "evolve.answer.prompts",
    "load_answer_prompt": "evolve.answer.prompts",
    "not_found_lines": "evolve.answer.prompts",
    "prompt_versions": "evolve.answer.prompts",
    "SupportPrompt": "evolve.answer.prompts",
    "load_support_prompt": "evolve.answer.prompts",
    "AnswerEval": "evolve.answer._eval",
    "QueryAnswer": "evolve.answer._eval",
    "answer_eval": "evolve.answer._eval",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'evolve.answer' has no attribute {name!r}")
