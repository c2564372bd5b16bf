"""Feedback from people: the UBI 1.3.0 event store (SQLite in the workspace or PostgreSQL), the click model that
turns events into graded judgements, and the export to a gold folder (``evolve feedback export``)."""

from __future__ import annotations

from pathlib import Path

from evolve.feedback._base import FeedbackCounts, FeedbackStore
from evolve.feedback._checks import CheckedEvent, FeedbackRejected, answer_of, check_event, cited_of
from evolve.feedback._export import FORMATS, ExportSummary, export_gold
from evolve.feedback._grades import Failure, FeedbackJudgements, GradeRules, PairJudgement, grade_feedback, query_key
from evolve.feedback._interleaving import (
    InterleavingResult,
    interleaving_gate,
    interleaving_results,
    query_margins,
    sign_test,
)
from evolve.feedback._records import (
    ACTIONS,
    ANSWER_ACTIONS,
    APPLICATION,
    HIT_ACTIONS,
    OBJECT_ACTIONS,
    VERDICT_ACTIONS,
    event_record,
    iso,
    now_iso,
    parse_when,
    query_record,
)
from evolve.feedback._ubi import SCHEMA_DIR, ubi_schema, ubi_schema_verbatim, ubi_validator

__all__ = [
    "ANSWER_ACTIONS",
    "CheckedEvent",
    "Failure",
    "FeedbackRejected",
    "HIT_ACTIONS",
    "VERDICT_ACTIONS",
    "answer_of",
    "check_event",
    "cited_of",
    "FORMATS",
    "ExportSummary",
    "FeedbackJudgements",
    "GradeRules",
    "InterleavingResult",
    "PairJudgement",
    "export_gold",
    "grade_feedback",
    "interleaving_gate",
    "interleaving_results",
    "query_margins",
    "query_key",
    "sign_test",
    "ACTIONS",
    "APPLICATION",
    "OBJECT_ACTIONS",
    "SCHEMA_DIR",
    "FeedbackCounts",
    "FeedbackStore",
    "event_record",
    "feedback_path",
    "iso",
    "now_iso",
    "open_feedback_store",
    "parse_when",
    "query_record",
    "ubi_schema",
    "ubi_schema_verbatim",
    "ubi_validator",
]


def feedback_path(workspace) -> Path:
    """The default store: ``<workspace>/feedback.sqlite``."""
    return workspace.path / "feedback.sqlite"


def open_feedback_store(workspace, url: str | None = None) -> FeedbackStore:
    """``url`` (``--feedback-url``, ``EVOLVE_FEEDBACK_URL``): ``postgresql://...`` or ``sqlite:///PATH``; none:
    the workspace's SQLite file. Anything else is a one-line :class:`~evolve.errors.StorageError`."""
    import os

    from evolve.errors import StorageError

    url = url or os.environ.get("EVOLVE_FEEDBACK_URL") or None
    if url is None:
        from evolve.feedback._sqlite import SQLiteFeedbackStore

        return SQLiteFeedbackStore(feedback_path(workspace))
    from evolve._pgurl import is_postgres_url

    if is_postgres_url(url):
        from evolve.feedback._postgres import PostgresFeedbackStore

        return PostgresFeedbackStore(url)
    if url.startswith("sqlite:///"):
        from evolve.feedback._sqlite import SQLiteFeedbackStore

        return SQLiteFeedbackStore(url[len("sqlite:///"):])  # sqlite:////abs/path -> /abs/path
    from evolve.secrets import redact_url

    raise StorageError(f"--feedback-url: expected postgresql://... or sqlite:///PATH, got '{redact_url(url)}'")
