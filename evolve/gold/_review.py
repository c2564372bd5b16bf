"""Review by people: a gold folder's judgements out to Quepid or a spreadsheet, and the ratings back in.

Formats (read and written as their tools do):

- ``quepid``: CSV with the header ``query,docid,rating`` (Quepid's rating import/export; cells a spreadsheet
  would run as a formula get a leading ``'``, which the import strips: :mod:`evolve.gold._quepid`); ``query`` is
  the query *text*, so a rating maps back to the folder's query with that text (NFC, casefold, whitespace collapsed). A
  text the folder lacks becomes a new query (id ``r-<hash of the text>``, ``source: imported``). An empty rating
  is an unrated row and is skipped.
- ``trec``: TREC qrels, ``qid 0 docid grade`` (three columns ``qid docid grade`` are read too); ``qid`` must be a
  query of the folder.

Importing merges the ratings into the folder (a rating replaces the grade of the same query and document; a
query pinned to a role keeps its ratings in that role), marks every rated query ``reviewed`` in its metadata with
``reviewed_by`` and ``reviewed_at``, appends one provenance record per rated query to ``gold.jsonl`` (who, when,
from which file, what changed), and writes the folder through :func:`~evolve.gold.write_gold`: all or nothing,
keeping whatever else the folder held.
"""

from __future__ import annotations

import csv
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from evolve.datasets._common import qrels_fields
from evolve.datasets._types import nfc
from evolve.errors import ConfigError, DatasetError, did_you_mean
from evolve.gold._folder import read_gold, write_gold
from evolve.gold._quepid import quepid_csv, unneutralise
from evolve.splits import text_key

__all__ = ["REVIEW_FORMATS", "ImportResult", "export_gold", "import_ratings", "guess_format"]

REVIEW_FORMATS = ("quepid", "trec")


def _check_format(fmt: str) -> str:
    if fmt not in REVIEW_FORMATS:
        raise ConfigError(f"--format: expected one of {', '.join(REVIEW_FORMATS)}, got '{fmt}'{did_you_mean(fmt, REVIEW_FORMATS)}")
    return fmt


def guess_format(path: str | os.PathLike) -> str:
    """``quepid`` for a .csv file, ``trec`` otherwise."""
    return "quepid" if str(path).lower().endswith(".csv") else "trec"


def export_gold(folder: str | os.PathLike, out: str | os.PathLike, fmt: str) -> tuple[int, int]:
    """Write every judgement of the gold folder (pinned or not) to ``out`` in ``fmt``, atomically.
    Returns (judgements, queries)."""
    from evolve._io import atomic_write_text

    _check_format(fmt)
    gold = read_gold(folder)
    judged = gold.all_qrels()
    rows = [(q, d, r) for q in sorted(judged) for d, r in sorted(judged[q].items())]
    if fmt == "quepid":
        text = quepid_csv((gold.queries[q], d, r) for q, d, r in rows)
    else:
        text = "".join(f"{q} 0 {d} {r}\n" for q, d, r in rows)
    atomic_write_text(out, text)
    return len(rows), len(judged)


@dataclass
class ImportResult:
    ratings: int
    changed: int
    added: int
    unchanged: int
    new_queries: int
    reviewed: int
    reviewer: str


def _grade(raw: str, path: Path, lineno: int) -> int:
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value.is_integer() or value < 0:
        raise DatasetError(f"expected a rating that is a whole number >= 0, got '{raw}'", path=str(path), line=lineno)
    return int(value)


def _read_quepid(path: Path):
    """Yield (line, query text, doc id, grade) of a Quepid CSV."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        cols = [c.strip().lower() for c in header or []]
        if not {"query", "docid", "rating"} <= set(cols):
            raise DatasetError(f"expected the header 'query,docid,rating', got '{','.join(header or [])}'",
                               path=str(path), line=1)
        iq, idoc, ir = cols.index("query"), cols.index("docid"), cols.index("rating")
        for row in reader:
            lineno = reader.line_num
            if not any(c.strip() for c in row):
                continue
            if len(row) < len(cols):
                raise DatasetError(f"expected {len(cols)} columns (query,docid,rating), got {len(row)}",
                                   path=str(path), line=lineno)
            if not row[ir].strip():
                continue  # unrated in Quepid
            yield lineno, nfc(unneutralise(row[iq])), nfc(unneutralise(row[idoc].strip())), _grade(row[ir], path, lineno)


def _read_trec(path: Path, known: set[str]):
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = qrels_fields(line)  # tab-separated when there is a tab (ids with spaces), else whitespace
            if not parts:
                continue
            if len(parts) == 4:
                qid, _, did, rel = parts
            elif len(parts) == 3:
                qid, did, rel = parts
            else:
                raise DatasetError(f"expected TREC qrels 'qid 0 docid grade', got {len(parts)} column(s)",
                                   path=str(path), line=lineno)
            qid = nfc(qid)
            if qid not in known:
                raise DatasetError(f"query '{qid}' is not in the gold folder: expected one of its query ids",
                                   path=str(path), line=lineno)
            yield lineno, qid, nfc(did), _grade(rel, path, lineno)


def import_ratings(file: str | os.PathLike, folder: str | os.PathLike, *, fmt: str | None = None,
                   reviewer: str | None = None) -> ImportResult:
    """Merge the ratings of ``file`` into the gold ``folder`` (see the module docstring)."""
    import getpass

    from evolve.datasets._common import read_jsonl

    path = Path(file)
    fmt = _check_format(fmt or guess_format(path))
    if not path.is_file():
        raise DatasetError(f"expected a {fmt} ratings file, got no such file", path=str(path))
    gold = read_gold(folder)
    reviewer = reviewer or os.environ.get("USER") or getpass.getuser()
    queries = dict(gold.queries)
    metadata = {q: dict(m) for q, m in gold.metadata.items()}
    qrels = {q: dict(d) for q, d in gold.qrels.items()}
    pinned = {r: {q: dict(d) for q, d in t.items()} for r, t in gold.pinned.items()}
    role_of = {q: r for r, t in pinned.items() for q in t}
    by_text: dict[str, str] = {}
    for q in sorted(queries):
        by_text.setdefault(text_key(queries[q]), q)

    if fmt == "quepid":
        rows = []
        for lineno, text, did, grade in _read_quepid(path):
            key = text_key(text)
            qid = by_text.get(key)
            if qid is None:
                qid = "r-" + hashlib.sha256(key.encode()).hexdigest()[:10]
                queries[qid] = text
                metadata[qid] = {"source": "imported"}
                by_text[key] = qid
            rows.append((lineno, qid, did, grade))
    else:
        rows = list(_read_trec(path, set(queries)))

    seen: dict[tuple[str, str], int] = {}
    per_query: dict[str, dict[str, int]] = {}
    changed = added = unchanged = 0
    for lineno, qid, did, grade in rows:
        if (qid, did) in seen:
            raise DatasetError(f"duplicate rating for query '{qid}' and document '{did}' (first on line {seen[qid, did]})",
                               path=str(path), line=lineno)
        seen[qid, did] = lineno
        table = pinned[role_of[qid]] if qid in role_of else qrels
        docs = table.setdefault(qid, {})
        old = docs.get(did)
        stats = per_query.setdefault(qid, {"ratings": 0, "changed": 0, "added": 0})
        stats["ratings"] += 1
        if old is None:
            added += 1
            stats["added"] += 1
        elif old != grade:
            changed += 1
            stats["changed"] += 1
        else:
            unchanged += 1
        docs[did] = grade

    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    records = [obj for _, obj in read_jsonl(Path(folder) / "gold.jsonl")] if (Path(folder) / "gold.jsonl").is_file() else []
    for qid, stats in sorted(per_query.items()):
        metadata.setdefault(qid, {}).update({"reviewed": True, "reviewed_by": reviewer, "reviewed_at": now})
        records.append({"query_id": qid, "event": "reviewed", "reviewer": reviewer, "time": now, "file": path.name,
                        "format": fmt, **stats})
    new_queries = len(queries) - len(gold.queries)
    write_gold(folder, queries, qrels, metadata=metadata, pinned=pinned or None, provenance=records, keep_extra=True)
    return ImportResult(len(rows), changed, added, unchanged, new_queries, len(per_query), reviewer)
