"""``evolve feedback export``: feedback judgements written as a gold folder (evolve.gold's format, so
``evolve run --gold DIR`` takes it), with TREC qrels and, on request, Quepid's CSV beside it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from evolve.feedback._grades import FeedbackJudgements, GradeRules, gold_query_id, grade_feedback

__all__ = ["FORMATS", "ExportSummary", "export_gold"]

FORMATS = ("trec", "quepid")
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")


@dataclass
class ExportSummary:
    out: Path
    queries: int
    judgements: int
    by_grade: dict[int, int]
    skipped_no_positive: int
    without_text: int
    files: list[str]


def _lang(text: str) -> str:
    return "ko" if _HANGUL.search(text) else "en"


def _trec(qrels: dict[str, dict[str, int]]) -> str:
    return "".join(f"{q} 0 {d} {g}\n" for q in sorted(qrels) for d, g in sorted(qrels[q].items()))


def _quepid(texts: dict[str, str], qrels: dict[str, dict[str, int]]) -> str:
    """Quepid's CSV, its cells neutralised against formula injection (what people typed goes into it)."""
    from evolve.gold import quepid_csv

    return quepid_csv((texts[q], d, g) for q in sorted(qrels) for d, g in sorted(qrels[q].items()))


def export_gold(store, out: str | Path, *, fmt: str = "trec", since: datetime | None = None,
                rules: GradeRules | None = None) -> ExportSummary:
    """Grade the store's events (since ``since``) and write the gold folder ``out`` (all or nothing)."""
    from evolve.gold import write_gold

    if fmt not in FORMATS:
        from evolve.errors import ConfigError, did_you_mean

        raise ConfigError(f"--format: expected one of {', '.join(FORMATS)}, got '{fmt}'{did_you_mean(fmt, FORMATS)}")
    judged: FeedbackJudgements = grade_feedback(store.queries(since), store.events(since), rules)
    by_key = judged.qrels()
    ids = {key: gold_query_id(key) for key in by_key}
    queries = {ids[k]: judged.texts[k] for k in by_key}
    qrels = {ids[k]: docs for k, docs in by_key.items()}
    metadata = {ids[k]: {"source": "feedback", "kind": "feedback", "lang": _lang(judged.texts[k]),
                         "searches": judged.searches.get(k, 0), "clients": judged.clients.get(k, 0)} for k in by_key}
    provenance = []
    for p in judged.pairs:
        if p.query in by_key and p.grade is not None:
            provenance.append({"query_id": ids[p.query], "doc_id": p.doc_id, "grade": p.grade,
                               "source": "feedback", "events": dict(sorted(p.events.items())),
                               "impressions": p.impressions, "clicks": p.clicks, "coec": round(p.coec, 4),
                               "clients": len(p.client_grades)})
    if not qrels:
        from evolve.errors import EvolveError

        raise EvolveError(f"nothing to export from {store.location}: expected a query with at least one grade above 0, "
                          f"got {len(judged.searches)} queries and {len(judged.pairs)} judged pairs "
                          f"({judged.without_text} searches stored without text)")
    by_grade: dict[int, int] = {}
    for docs in qrels.values():
        for g in docs.values():
            by_grade[g] = by_grade.get(g, 0) + 1
    extra = {"qrels.trec": _trec(qrels)}
    if fmt == "quepid":
        extra["quepid.csv"] = _quepid(queries, qrels)
    skipped = len({p.query for p in judged.pairs if p.grade is not None} - set(by_key))
    path = write_gold(out, queries, qrels, metadata=metadata, provenance=provenance, extra_files=extra)
    return ExportSummary(path, len(queries), sum(by_grade.values()), dict(sorted(by_grade.items())), skipped,
                         judged.without_text, ["queries.jsonl", "qrels.tsv", "gold.jsonl", *extra])
