"""Measuring answers without an LLM: correctness against reference answers (:mod:`._qa`: SQuAD v1.1 and KorQuAD
1.0 exact match and F1) and whether the packed context holds a reference answer at all (:mod:`._context`:
``context_recall@T``).

Names load on first use (``evolve --help`` stays instant).
"""

from __future__ import annotations

_EXPORTS = {
    "answer_em_f1": "evolve.answer.metrics._qa",
    "is_korean_answer": "evolve.answer.metrics._qa",
    "korquad_em": "evolve.answer.metrics._qa",
    "korquad_f1": "evolve.answer.metrics._qa",
    "korquad_normalize": "evolve.answer.metrics._qa",
    "normalize_for": "evolve.answer.metrics._qa",
    "uses_korquad": "evolve.answer.metrics._qa",
    "squad_em": "evolve.answer.metrics._qa",
    "squad_f1": "evolve.answer.metrics._qa",
    "squad_normalize": "evolve.answer.metrics._qa",
    "CONTEXT_RECALL": "evolve.answer.metrics._context",
    "answer_in_context": "evolve.answer.metrics._context",
    "context_metric_budget": "evolve.answer.metrics._context",
    "context_recall": "evolve.answer.metrics._context",
    "context_recall_scores": "evolve.answer.metrics._context",
    "context_settings": "evolve.answer.metrics._context",
    "CitedAnswer": "evolve.answer.metrics._citations",
    "citation_precision_recall": "evolve.answer.metrics._citations",
    "Claim": "evolve.answer.metrics._alce",
    "alce_support": "evolve.answer.metrics._alce",
    "format_passage": "evolve.answer.metrics._alce",
    "percentile": "evolve.answer.metrics._latency",
    "latency_summary": "evolve.answer.metrics._latency",
    "refusal_rates": "evolve.answer.metrics._refusal",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'evolve.answer.metrics' has no attribute {name!r}")
