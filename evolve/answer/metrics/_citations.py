"""Citations against qrels, without an LLM.

* **citation precision**: of every citation the answers make (one per distinct cited passage of an answer: a
  passage is one document, so one per cited document), the share that points to a document judged relevant
  (grade > 0) for the question. Pooled over the answers (micro-averaged): an answer with five citations weighs
  five times one with one.
* **citation recall**: of the answered questions (not refused), the share with at least one citation to a
  relevant document.

Refused answers cite nothing and are left out of both (the refusal rates measure them). With no citation at
all, precision is None (undefined, not 0); with no answered question, recall is None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["CitedAnswer", "citation_precision_recall"]


@dataclass(frozen=True)
class CitedAnswer:
    """One question's answer as the citation metrics see it: the documents it cites (one entry per citation)
    and whether it was a refusal."""

    qid: str
    cited_doc_ids: Sequence[str]
    refused: bool


def citation_precision_recall(
    answers: Iterable[CitedAnswer], qrels: Mapping[str, Mapping[str, int]]
) -> dict[str, float | int | None]:
    """``{"citation_precision", "citation_recall", "n_citations", "n_relevant_citations", "n_answered",
    "n_answered_with_relevant"}`` (see the module's definitions)."""
    n_cit = n_rel_cit = n_answered = n_hit = 0
    for a in answers:
        if a.refused:
            continue
        relevant = {d for d, g in qrels.get(a.qid, {}).items() if g > 0}
        n_answered += 1
        hits = sum(1 for d in a.cited_doc_ids if d in relevant)
        n_cit += len(a.cited_doc_ids)
        n_rel_cit += hits
        n_hit += 1 if hits else 0
    return {
        "citation_precision": n_rel_cit / n_cit if n_cit else None,
        "citation_recall": n_hit / n_answered if n_answered else None,
        "n_citations": n_cit,
        "n_relevant_citations": n_rel_cit,
        "n_answered": n_answered,
        "n_answered_with_relevant": n_hit,
    }
