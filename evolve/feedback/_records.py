"""UBI 1.3.0 records: what a query record and an event record hold, and the timestamps they carry.

A *query record* is one search as it was answered (``ubi_queries``); an *event record* is one thing a person did
with it (``ubi_events``). Both are plain dicts in the shape of the vendored schemas (``schemas/``), so UBI
tooling (OpenSearch's dashboards, Search Relevance Workbench) can read them. Only ids travel: a document's text
is never part of a record.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from evolve.errors import ConfigError

__all__ = [
    "ACTIONS",
    "OBJECT_ACTIONS",
    "HIT_ACTIONS",
    "ANSWER_ACTIONS",
    "VERDICT_ACTIONS",
    "APPLICATION",
    "OBJECT_ID_FIELD",
    "now_iso",
    "iso",
    "parse_when",
    "query_record",
    "event_record",
]

#: what a person can do with a result list: open a document (``click``), mark it, or say nothing answered; and
#: with a written answer (``POST /v1/answer``): judge it as a whole, or open one of its citations
ACTIONS = ("click", "useful", "not_useful", "answered", "no_answer",
           "answer_helpful", "answer_wrong", "answer_no_answer", "citation_click")
#: the actions about one document of the result list (``object_id`` among the query's hits)
HIT_ACTIONS = ("click", "useful", "not_useful", "answered")
#: the actions about one document (``object_id`` required): a hit, or one of the answer's cited documents
OBJECT_ACTIONS = (*HIT_ACTIONS, "citation_click")
#: a person's verdict on the answer as a whole (no ``object_id``): helpful, wrong, or it did not answer
VERDICT_ACTIONS = ("answer_helpful", "answer_wrong", "answer_no_answer")
#: the actions that need a written answer on the query (its UBI query record's ``query_attributes.answer``)
ANSWER_ACTIONS = (*VERDICT_ACTIONS, "citation_click")
#: actions stored with UBI ``message_type`` CLICK (a document opened); the rest are FEEDBACK
_CLICKS = ("click", "citation_click")
APPLICATION = "evolve-serve"
OBJECT_ID_FIELD = "doc_id"


def iso(dt: datetime) -> str:
    """UTC, microseconds, trailing ``Z``: fixed width, so text order is time order."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_iso() -> str:
    return iso(datetime.now(UTC))


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_when(text: str, what: str = "date") -> datetime:
    """``2025-03-01`` (midnight UTC) or an ISO 8601 date-time (``Z`` or an offset; none means UTC)."""
    raw = str(text).strip()
    try:
        if _DATE.fullmatch(raw):
            return datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC)
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{what}: expected a date like 2025-03-01 or 2025-03-01T12:00:00Z, got '{text}'") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def query_record(*, query_id: str, client_id: str, user_query: str, hit_ids: list[str], attributes: dict,
                 timestamp: str | None = None) -> dict:
    """A UBI query record (``query.request.schema.json``)."""
    return {
        "application": APPLICATION,
        "query_id": query_id,
        "client_id": client_id,
        "user_query": user_query,
        "timestamp": timestamp or now_iso(),
        "object_id_field": OBJECT_ID_FIELD,
        "query_response_hit_ids": list(hit_ids),
        "query_attributes": dict(attributes),
    }


def event_record(*, event_id: str, action_name: str, query_id: str, client_id: str, object_id: str | None,
                 ordinal: int, config_version: str, extra: dict | None = None, timestamp: str | None = None) -> dict:
    """A UBI event record (``event.schema.json``). ``ordinal`` is the 1-based rank of ``object_id`` in the list
    shown (for ``citation_click``: the citation's marker ``n`` of ``[n]``); ``0`` for ``no_answer`` and the verdicts
    on an answer (about the whole list or answer; the schema requires a position)."""
    attrs: dict = {"position": {"ordinal": int(ordinal)}, "config_version": config_version}
    if object_id is not None:
        attrs["object"] = {"object_id": object_id, "object_id_field": OBJECT_ID_FIELD}
    attrs.update(extra or {})
    return {
        "application": APPLICATION,
        "event_id": event_id,
        "action_name": action_name,
        "query_id": query_id,
        "client_id": client_id,
        "timestamp": timestamp or now_iso(),
        "message_type": "CLICK" if action_name in _CLICKS else "FEEDBACK",
        "event_attributes": attrs,
    }
