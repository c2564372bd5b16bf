"""What a feedback event must agree with: the search it is about (its hits, and the answer written for it).

``POST /v1/feedback`` calls :func:`check_event` before it stores anything; a mismatch is a
:class:`FeedbackRejected` (HTTP 422 with its one line). The rules:

* ``click``, ``useful``, ``not_useful``, ``answered``: ``object_id`` is one of the query's hits
  (``query_response_hit_ids``); ``position``, when given, is its 1-based rank there; the ordinal is that rank.
* ``no_answer``: no ``object_id`` (it is about the whole list); ordinal 0.
* ``answer_helpful``, ``answer_wrong``, ``answer_no_answer``: the query was answered by ``POST /v1/answer`` (its
  query record carries ``query_attributes.answer``); no ``object_id`` (the verdict is about the answer as a
  whole); ordinal 0.
* ``citation_click``: the query was answered, and ``object_id`` is one of the answer's cited documents
  (``query_attributes.answer.cited``); ``position``, when given, is the marker ``n`` of the ``[n]`` clicked: the
  answer's query record lists the packed passages' documents in marker order (``query_response_hit_ids``; a
  document appears once), so the marker of a document is its place there; the ordinal is that marker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evolve.errors import EvolveError
from evolve.feedback._records import ACTIONS, ANSWER_ACTIONS, HIT_ACTIONS, OBJECT_ACTIONS

__all__ = ["FeedbackRejected", "CheckedEvent", "check_event", "answer_of", "answer_state", "cited_of"]


class FeedbackRejected(EvolveError):
    """An event that does not fit the search it names (unknown action, a document that was not shown or cited)."""


@dataclass
class CheckedEvent:
    ordinal: int
    extra: dict = field(default_factory=dict)


def answer_of(query: dict) -> dict | None:
    """The answer written for this search, as its query record keeps it (``query_attributes.answer``: ``cited``,
    ``refused``, ``grounded``, ...), or None for a search that got no written answer: ``POST /v1/retrieve``, or an
    answer still being written (``{"pending": true}``), failed (``{"error": ...}``) or left by its client
    (``{"cancelled": true}``)."""
    answer = (query.get("query_attributes") or {}).get("answer")
    return answer if isinstance(answer, dict) and "cited" in answer else None


def answer_state(query: dict) -> str | None:
    """``written``, ``pending``, ``failed`` or ``cancelled`` for a search made by ``POST /v1/answer``; None for
    one made by ``POST /v1/retrieve``."""
    answer = (query.get("query_attributes") or {}).get("answer")
    if not isinstance(answer, dict):
        return None
    if "cited" in answer:
        return "written"
    return "failed" if "error" in answer else "cancelled" if answer.get("cancelled") else "pending"


def cited_of(query: dict) -> dict[str, int | None]:
    """The answer's cited documents, each with its marker ``n`` (its place among the packed passages, which the
    answer's query record lists as its hits; None when it is not there), in the answer's order."""
    answer = answer_of(query) or {}
    hits = query.get("query_response_hit_ids") or []
    return {doc: (hits.index(doc) + 1 if doc in hits else None)
            for doc in answer.get("cited") or [] if isinstance(doc, str)}


def check_event(query: dict, action: str, object_id: str | None, position: int | None) -> CheckedEvent:
    """Check an event against the query record it names; return its ordinal and extra attributes."""
    qid = query.get("query_id", "")
    if action not in ACTIONS:
        from evolve.errors import did_you_mean

        raise FeedbackRejected(f"action_name: expected one of {', '.join(ACTIONS)}, got '{action}'"
                               f"{did_you_mean(action, ACTIONS)}")
    if action in OBJECT_ACTIONS and not object_id:
        raise FeedbackRejected(f"object_id: expected the document for action '{action}', got none")
    if action not in OBJECT_ACTIONS and object_id is not None:
        what = "answer" if action in ANSWER_ACTIONS else "list"
        raise FeedbackRejected(f"object_id: expected none for '{action}' (it is about the whole {what}), "
                               f"got '{object_id}'")
    if action in ANSWER_ACTIONS and answer_of(query) is None:
        state = answer_state(query)
        why = "which has no answer" if state is None else f"whose answer is {state}" + (
            " (not written yet)" if state == "pending" else "")
        raise FeedbackRejected(f"query_id: expected a query answered by POST /v1/answer for '{action}', got "
                               f"'{qid}', {why}")
    attrs = query.get("query_attributes") or {}
    if action in HIT_ACTIONS:
        hits = query.get("query_response_hit_ids") or []
        if object_id not in hits:
            raise FeedbackRejected(f"object_id: expected one of the {len(hits)} documents returned for query "
                                   f"'{qid}', got '{object_id}'")
        ordinal = hits.index(object_id) + 1
        if position is not None and position != ordinal:
            raise FeedbackRejected(f"position: expected {ordinal} (the rank of '{object_id}'), got {position}")
        inter = attrs.get("interleaving")
        return CheckedEvent(ordinal, {"interleaving_team": inter["teams"][ordinal - 1]} if inter else {})
    if action == "citation_click":
        cited = cited_of(query)
        if object_id not in cited:
            raise FeedbackRejected(f"object_id: expected one of the {len(cited)} documents the answer to query "
                                   f"'{qid}' cites, got '{object_id}'")
        marker = cited[object_id]
        if position is not None and marker is not None and position != marker:
            raise FeedbackRejected(f"position: expected {marker} (the marker of '{object_id}'), got {position}")
        if position is not None and position < 1:
            raise FeedbackRejected(f"position: expected a marker of 1 or more, got {position}")
        return CheckedEvent(position if position is not None else (marker or 1))
    if position not in (None, 0):
        raise FeedbackRejected(f"position: expected none for '{action}' (it has no rank), got {position}")
    return CheckedEvent(0)
