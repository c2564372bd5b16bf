"""A gold folder: the one format every gold source writes and ``--gold DIR`` reads.

Layout::

    DIR/
      queries.jsonl        {"_id": ..., "text": ..., "metadata": {...}}   (BEIR's queries format)
      qrels.tsv            query-id <TAB> corpus-id <TAB> score, with a header   (or qrels.txt: TREC "qid 0 docid grade")
      qrels/tune.tsv       optional: judgements pinned to a role (tune, holdout or report); a query pinned here
      qrels/holdout.tsv      is never given a role by hash
      qrels/report.tsv
      gold.jsonl           optional: provenance, one JSON object per line with at least "query_id"
      ...                  anything else (a report, a README) is ignored by readers

``metadata`` of a query may hold ``lang`` (``ko``/``en``), ``kind`` (``factual``, ``how-to``, ``conceptual``,
``feedback``...), ``source`` (``generated``, ``judged``, ``reviewed``, ``feedback``, ``imported``), ``doc_id`` and
``passage`` (the quoted source passage: gold survives re-chunking, and a passage that no longer occurs in its
document marks the query stale), ``reviewed`` (a person checked it; ``evolve gold import`` also writes
``reviewed_by`` and ``reviewed_at``), ``judged`` (an LLM judge graded pooled results for it) and ``overlap`` (the
generated question's lexical overlap with its passage, in [0, 1]) and ``answers`` (reference answer strings, a
list or one string: the answer ``evolve gold generate`` asked about, SQuAD-style spans; ``GoldSet.answers``).
Readers keep unknown keys.

Every judged query must be in ``queries.jsonl``: a qrels line naming another is an error naming file and line.

:func:`write_gold` writes the whole folder into a sibling and swaps it into place (:mod:`evolve.gold._swap`): a
reader sees the old folder or the new one, never a half-written one, and a write killed at any step is completed
or undone at the next read or write, so the folder never goes missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolve.datasets._common import qrels_fields, read_jsonl, read_qrels_tsv, read_queries_jsonl
from evolve.datasets._types import clean_answers, nfc
from evolve.errors import DatasetError
from evolve.gold._swap import build_dir, recover, swap_into_place

__all__ = ["ROLES", "GoldSet", "read_gold", "write_gold", "is_gold_folder"]

#: roles a folder may pin judgements to
ROLES = ("tune", "holdout", "report")
#: what write_gold writes (and so never carries over from an old folder)
_OWNED = {"queries.jsonl", "qrels.tsv", "qrels.txt", "qrels", "gold.jsonl"}


@dataclass
class GoldSet:
    """One gold folder, read."""

    path: Path
    queries: dict[str, str]
    #: per-query metadata from queries.jsonl (``lang``, ``kind``, ``source``, ``doc_id``, ``passage``, ``reviewed``)
    metadata: dict[str, dict[str, Any]]
    #: judgements without a pinned role (the role comes from a seeded hash of the query text)
    qrels: dict[str, dict[str, int]]
    #: role -> judgements pinned to it by qrels/<role>.tsv
    pinned: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    #: query id -> provenance records (gold.jsonl)
    provenance: dict[str, list[dict]] = field(default_factory=dict)
    #: query id -> reference answers (metadata ``answers``: NFC, deduplicated, order kept); only queries with one
    answers: dict[str, list[str]] = field(default_factory=dict)

    def all_qrels(self) -> dict[str, dict[str, int]]:
        """Every judgement of the folder, pinned or not."""
        out: dict[str, dict[str, int]] = {q: dict(d) for q, d in self.qrels.items()}
        for role_qrels in self.pinned.values():
            for q, docs in role_qrels.items():
                out.setdefault(q, {}).update(docs)
        return out

    def fingerprint(self) -> str:
        """sha256 of the queries, their judgements and pinned roles, and the reference answers when any query has
        one (other metadata and provenance excluded). Answers count because ``context_recall`` is scored on them:
        trials scored under other answers must not compare. A folder without answers keeps the fingerprint it
        always had."""
        blob = {
            "queries": sorted(self.queries.items()),
            "qrels": {q: sorted(d.items()) for q, d in sorted(self.qrels.items())},
            "pinned": {r: {q: sorted(d.items()) for q, d in sorted(p.items())} for r, p in sorted(self.pinned.items())},
        }
        if self.answers:
            blob["answers"] = {q: list(a) for q, a in sorted(self.answers.items())}
        return hashlib.sha256(json.dumps(blob, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def is_gold_folder(path: str | os.PathLike) -> bool:
    p = Path(path)
    recover(p)  # a write killed mid-swap is completed first (evolve.gold._swap)
    return p.is_dir() and (p / "queries.jsonl").is_file()


def _read_metadata(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """Per-query metadata, and the reference answers it holds (``answers``: a string or a list of strings)."""
    out: dict[str, dict[str, Any]] = {}
    answers: dict[str, list[str]] = {}
    for lineno, obj in read_jsonl(path):
        meta = obj.get("metadata") or {}
        if not isinstance(meta, dict):
            raise DatasetError(f"expected 'metadata' to be a JSON object, got {type(meta).__name__}",
                               path=str(path), line=lineno)
        qid = nfc(str(obj.get("_id", obj.get("id"))))
        out[qid] = meta
        raw = meta.get("answers")
        if raw is None:
            continue
        raw = [raw] if isinstance(raw, str) else raw
        if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
            raise DatasetError(f"expected metadata 'answers' to be a string or a list of strings, got "
                               f"{json.dumps(meta.get('answers'), ensure_ascii=False)[:60]}", path=str(path), line=lineno)
        refs = clean_answers(raw)
        if refs:
            answers[qid] = refs
    return out, answers


def _read_provenance(path: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for lineno, obj in read_jsonl(path):
        qid = obj.get("query_id")
        if qid is None:
            raise DatasetError("expected a 'query_id' in every provenance record, got none", path=str(path), line=lineno)
        out.setdefault(nfc(str(qid)), []).append(obj)
    return out


def _check_judged_queries(path: Path, qrels: dict[str, dict[str, int]], queries: dict[str, str]) -> None:
    """A judgement of a query that queries.jsonl does not hold is an error naming the first such line."""
    unknown = set(qrels) - set(queries)
    if not unknown:
        return
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            parts = qrels_fields(line)
            if parts and nfc(parts[0]) in unknown:
                raise DatasetError(f"qrels name query '{nfc(parts[0])}', which queries.jsonl does not hold: "
                                   "expected every judged query in queries.jsonl", path=str(path), line=lineno)


def read_gold(path: str | os.PathLike) -> GoldSet:
    """Read a gold folder; a malformed line is a one-line :class:`DatasetError` naming file and line."""
    folder = Path(path).expanduser()
    recover(folder)  # a write killed mid-swap is completed first (evolve.gold._swap)
    if not folder.is_dir():
        raise DatasetError("expected a gold folder (queries.jsonl and qrels.tsv or qrels.txt), got no such folder",
                           path=str(folder))
    qpath = folder / "queries.jsonl"
    if not qpath.is_file():
        raise DatasetError("expected queries.jsonl in the gold folder, got none", path=str(folder))
    queries = read_queries_jsonl(qpath)
    metadata, answers = _read_metadata(qpath)
    qrels: dict[str, dict[str, int]] = {}
    for name in ("qrels.tsv", "qrels.txt"):
        if (folder / name).is_file():
            table = read_qrels_tsv(folder / name)
            _check_judged_queries(folder / name, table, queries)
            for q, docs in table.items():
                qrels.setdefault(q, {}).update(docs)
    pinned: dict[str, dict[str, dict[str, int]]] = {}
    qdir = folder / "qrels"
    if qdir.is_dir():
        for p in sorted(qdir.iterdir()):
            if not p.is_file() or p.suffix not in (".tsv", ".txt"):
                continue
            role = p.stem
            if role not in ROLES:
                raise DatasetError(f"expected qrels/<role>.tsv with role one of {', '.join(ROLES)}, got '{p.name}'",
                                   path=str(p))
            pinned[role] = read_qrels_tsv(p)
            _check_judged_queries(p, pinned[role], queries)
    if not qrels and not pinned:
        raise DatasetError("expected qrels.tsv, qrels.txt or qrels/<role>.tsv in the gold folder, got none",
                           path=str(folder))
    prov_path = folder / "gold.jsonl"
    provenance = _read_provenance(prov_path) if prov_path.is_file() else {}
    return GoldSet(folder, queries, metadata, qrels, pinned, provenance, answers)


def _qrels_lines(qrels: dict[str, dict[str, int]]) -> str:
    lines = ["query-id\tcorpus-id\tscore"]
    for q in sorted(qrels):
        for d, r in sorted(qrels[q].items()):
            lines.append(f"{q}\t{d}\t{int(r)}")
    return "\n".join(lines) + "\n"


def _write_file(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(text if isinstance(text, bytes) else text.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def write_gold(
    out: str | os.PathLike,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    *,
    metadata: dict[str, dict[str, Any]] | None = None,
    pinned: dict[str, dict[str, dict[str, int]]] | None = None,
    provenance: list[dict] | None = None,
    extra_files: dict[str, str | bytes] | None = None,
    keep_extra: bool = False,
    answers: dict[str, list[str]] | None = None,
) -> Path:
    """Write a gold folder at ``out`` (replacing one that is there), all or nothing.

    ``qrels`` are the judgements whose role comes by hash; ``pinned`` maps a role to judgements pinned to it.
    ``provenance`` records each carry a ``query_id``. ``answers`` (query id -> reference answers) are written as
    each query's metadata ``answers``, replacing any the metadata holds. ``extra_files`` (name -> text, or bytes for a picture) are
    written beside them (a report, a README, a PNG). With ``keep_extra``, everything else the old folder held (a
    report, a README, review files) is carried over, unless ``extra_files`` names it. Returns ``out``.
    """
    out = Path(out).expanduser().absolute()
    for role in pinned or {}:
        if role not in ROLES:
            raise ValueError(f"pinned role must be one of {ROLES}, got {role!r}")
    judged = set(qrels) | {q for p in (pinned or {}).values() for q in p}
    unknown = sorted(judged - set(queries))
    if unknown:
        raise ValueError(f"qrels name queries that are not in 'queries': {unknown[:3]}")
    if set(answers or {}) - set(queries):
        raise ValueError(f"answers name queries that are not in 'queries': {sorted(set(answers) - set(queries))[:3]}")
    recover(out)  # a write killed mid-swap is completed first: keep_extra then carries from the folder it left
    tmp = build_dir(out)
    try:
        meta = dict(metadata or {})
        for q, refs in (answers or {}).items():
            refs = clean_answers(refs)
            rest = {k: v for k, v in (meta.get(q) or {}).items() if k != "answers"}
            meta[q] = {**rest, "answers": refs} if refs else rest
        lines = []
        for q in sorted(queries):
            obj: dict[str, Any] = {"_id": q, "text": queries[q]}
            if meta.get(q):
                obj["metadata"] = meta[q]
            lines.append(json.dumps(obj, ensure_ascii=False, sort_keys=True))
        _write_file(tmp / "queries.jsonl", "\n".join(lines) + ("\n" if lines else ""))
        if qrels or not pinned:
            _write_file(tmp / "qrels.tsv", _qrels_lines(qrels))
        for role, role_qrels in sorted((pinned or {}).items()):
            _write_file(tmp / "qrels" / f"{role}.tsv", _qrels_lines(role_qrels))
        if provenance:
            for rec in provenance:
                if "query_id" not in rec:
                    raise ValueError("every provenance record needs a 'query_id'")
            _write_file(tmp / "gold.jsonl",
                        "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in provenance))
        for name, text in (extra_files or {}).items():
            if "/" in name or name.startswith(".") or name in ("queries.jsonl", "qrels.tsv", "qrels.txt", "gold.jsonl"):
                raise ValueError(f"extra file name must be a plain new file name, got {name!r}")
            _write_file(tmp / name, text)
        if keep_extra and out.is_dir():
            for entry in out.iterdir():
                if entry.name in _OWNED or (tmp / entry.name).exists():
                    continue
                if entry.is_dir():
                    shutil.copytree(entry, tmp / entry.name, symlinks=True)
                else:
                    shutil.copy2(entry, tmp / entry.name, follow_symlinks=False)
        swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
