"""``--gold DIR``: gold folders joined with (or replacing) a dataset's own qrels, in one place.

:func:`apply_gold` is the one function every command uses. It reads each folder (:func:`~evolve.gold.read_gold`),
drops what no longer holds, and returns the dataset with the gold in splits of its own:

- ``gold``: judgements whose role comes by hash (:mod:`evolve.splits`);
- ``gold.tune``, ``gold.holdout``, ``gold.report``: judgements a folder pins to a role (``qrels/<role>.tsv``).

Gold that no longer holds is dropped with a warning and counted:

- **stale**: a query whose ``passage`` (metadata) no longer occurs in its ``doc_id`` document (title and text,
  NFC with whitespace collapsed), because the page was edited or deleted;
- **dangling**: a judgement of a document the corpus no longer has.

``merge`` (the default) keeps the dataset's own qrels beside the gold, so gold joins tune and holdout while the
dataset's ``test`` split stays the report role; ``replace`` drops them, and the gold is all there is. Two sources
may share a query id only for the same text; their judgements then merge, the later folder winning per document.
A kept query's reference answers (metadata ``answers``) go to ``Dataset.answers``, a later folder's replacing an
earlier's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolve.datasets import Dataset
from evolve.errors import ConfigError, DatasetError, did_you_mean
from evolve.gold._folder import ROLES, GoldSet, read_gold
from evolve.splits import GOLD_SPLIT, pinned_split, text_key

log = logging.getLogger("evolve.gold")

__all__ = ["GOLD_MODES", "GoldSpec", "GoldFolderInfo", "GoldInfo", "apply_gold", "query_counts"]

#: how gold meets a dataset's own qrels
GOLD_MODES = ("merge", "replace")


@dataclass(frozen=True)
class GoldSpec:
    """Which gold folders a study reads (absolute paths) and how: the part of a study's gold that is stored."""

    folders: tuple[str, ...] = ()
    mode: str = "merge"

    @classmethod
    def parse(cls, folders: list[str] | tuple[str, ...] | None, mode: str | None = None) -> GoldSpec:
        mode = mode or "merge"
        if mode not in GOLD_MODES:
            raise ConfigError(f"--gold-mode: expected one of {', '.join(GOLD_MODES)}, got '{mode}'{did_you_mean(mode, GOLD_MODES)}")
        paths = []
        for f in folders or ():
            p = str(Path(f).expanduser().absolute())
            if p not in paths:
                paths.append(p)
        return cls(tuple(paths), mode)

    def to_dict(self) -> dict:
        return {"folders": list(self.folders), "mode": self.mode}

    @classmethod
    def from_dict(cls, d: dict | None) -> GoldSpec:
        d = d or {}
        return cls.parse(d.get("folders") or (), d.get("mode") or "merge")


@dataclass
class GoldFolderInfo:
    """One folder as read: its fingerprint, what it holds, and what was dropped from it."""

    path: str
    fingerprint: str
    n_queries: int
    n_judgements: int
    #: generated / judged / reviewed / feedback query counts (from metadata and provenance)
    counts: dict[str, int] = field(default_factory=dict)
    dropped_stale: int = 0
    dropped_dangling: int = 0


@dataclass
class GoldInfo:
    """What :func:`apply_gold` did: the folders, the gold queries kept, and the counts of what it dropped."""

    spec: GoldSpec
    folders: list[GoldFolderInfo] = field(default_factory=list)
    #: gold query id -> metadata (``lang``, ``kind``, ``reviewed``, ...), for the queries kept
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    reviewed: frozenset[str] = frozenset()
    warnings: list[str] = field(default_factory=list)

    @property
    def n_queries(self) -> int:
        return len(self.metadata)

    @property
    def dropped_stale(self) -> int:
        return sum(f.dropped_stale for f in self.folders)

    @property
    def dropped_dangling(self) -> int:
        return sum(f.dropped_dangling for f in self.folders)

    def fingerprint(self) -> str:
        """sha256 of the mode and each folder's fingerprint, in order ("" without gold)."""
        if not self.folders:
            return ""
        blob = {"mode": self.spec.mode, "folders": [f.fingerprint for f in self.folders]}
        return hashlib.sha256(json.dumps(blob, separators=(",", ":")).encode()).hexdigest()

    def mlflow_params(self) -> dict[str, Any]:
        """Where the gold came from, for a night's parent run (values are short; paths go in tags)."""
        totals = {k: sum(f.counts.get(k, 0) for f in self.folders) for k in ("generated", "judged", "reviewed", "feedback")}
        return {
            "gold_mode": self.spec.mode, "gold_folders": len(self.folders), "n_gold_queries": self.n_queries,
            **{f"n_gold_{k}": v for k, v in totals.items()},
            "n_gold_dropped_stale": self.dropped_stale, "n_gold_dropped_dangling": self.dropped_dangling,
        }

    def mlflow_tags(self) -> dict[str, str]:
        tags = {"gold_source_fingerprint": self.fingerprint()} if self.folders else {}
        for i, f in enumerate(self.folders):
            tags[f"gold.{i}.path"] = f.path
            tags[f"gold.{i}.fingerprint"] = f.fingerprint
            tags[f"gold.{i}.counts"] = ", ".join(f"{k} {v}" for k, v in f.counts.items())
        return tags


def _passage_text(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def _truthy(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.strip().lower() in ("true", "yes", "1")) or v == 1


def query_counts(gold: GoldSet, qids) -> dict[str, int]:
    """How many of ``qids`` were generated, judged, reviewed, or came from feedback (metadata and provenance)."""
    counts = {"generated": 0, "judged": 0, "reviewed": 0, "feedback": 0}
    for q in qids:
        meta = gold.metadata.get(q, {})
        prov = gold.provenance.get(q, [])
        source = str(meta.get("source", "")).lower()
        kinds = {str(r.get(k, "")).lower() for r in prov for k in ("kind", "event", "step", "source")}
        if source == "generated" or "generated" in kinds or any("model" in r and "prompt_hash" in r for r in prov):
            counts["generated"] += 1
        if _truthy(meta.get("judged")) or source == "judged" or kinds & {"judge", "judged"}:
            counts["judged"] += 1
        if _truthy(meta.get("reviewed")) or kinds & {"review", "reviewed"}:
            counts["reviewed"] += 1
        if source == "feedback" or str(meta.get("kind", "")).lower() == "feedback":
            counts["feedback"] += 1
    return counts


def _preview(items, n: int = 3) -> str:
    items = list(items)
    return ", ".join(repr(i) for i in items[:n]) + (", ..." if len(items) > n else "")


def _line_of(path: Path, qid: str) -> int | None:
    from evolve.datasets._common import read_jsonl

    for lineno, obj in read_jsonl(path):
        if unicodedata.normalize("NFC", str(obj.get("_id", obj.get("id")))) == qid:
            return lineno
    return None


def apply_gold(dataset: Dataset, spec: GoldSpec, *, strict: bool = False) -> tuple[Dataset, GoldInfo]:
    """``dataset`` with the gold of ``spec`` in its own splits (see the module docstring), and what was done.

    Without folders the dataset comes back as it is. ``strict`` makes stale and dangling gold errors."""
    info = GoldInfo(spec)
    if not spec.folders:
        return dataset, info
    corpus = dataset.corpus
    merge = spec.mode == "merge"
    queries: dict[str, str] = dict(dataset.queries) if merge else {}
    answers: dict[str, list[str]] = dict(dataset.answers) if merge else {}
    origin: dict[str, str] = {q: f"the dataset ({dataset.source})" for q in queries}
    unpinned: dict[str, dict[str, int]] = {}
    pinned_role: dict[str, str] = {}
    pinned: dict[str, dict[str, dict[str, int]]] = {r: {} for r in ROLES}
    doc_cache: dict[str, str] = {}

    def report(msg: str) -> None:
        if strict:
            raise DatasetError(f"{msg} (--strict makes this an error)")
        info.warnings.append(msg)

    for folder in spec.folders:
        gold = read_gold(folder)
        qpath = Path(folder) / "queries.jsonl"
        for q, t in gold.queries.items():
            if q in queries and text_key(queries[q]) != text_key(t):
                raise DatasetError(f"query '{q}' has another text here than in {origin[q]}: expected distinct query "
                                   "ids or the same text", path=str(qpath), line=_line_of(qpath, q))
        judged = gold.all_qrels()
        roles_here = {q: r for r, table in gold.pinned.items() for q in table}
        for r, table in gold.pinned.items():
            for q in table:
                if roles_here[q] != r:
                    raise DatasetError(f"query '{q}' is pinned to both {roles_here[q]} and {r}: expected one role per query",
                                       path=folder)
        for q, r in roles_here.items():
            if pinned_role.get(q, r) != r:
                raise DatasetError(f"query '{q}' is pinned to {r} here but to {pinned_role[q]} in an earlier folder: "
                                   "expected one role per query", path=folder)

        empty = sorted(q for q in judged if not gold.queries[q].strip())
        stale = []
        for q in sorted(judged):
            meta = gold.metadata.get(q, {})
            passage, doc_id = meta.get("passage"), meta.get("doc_id")
            if not passage or doc_id is None:
                continue
            doc_id = unicodedata.normalize("NFC", str(doc_id))
            if doc_id not in doc_cache:
                doc = corpus.get(doc_id)
                doc_cache[doc_id] = _passage_text(doc.full_text) if doc is not None else ""
            if _passage_text(str(passage)) not in doc_cache[doc_id]:
                stale.append(q)
        if empty:
            report(f"gold {folder}: dropped {len(empty)} empty quer(y/ies): {_preview(empty)}")
        if stale:
            report(f"gold {folder}: dropped {len(stale)} stale quer(y/ies) whose quoted passage no longer occurs in "
                   f"its document: {_preview(stale)}")
        gone = set(empty) | set(stale)
        unknown_docs = sorted({d for q, docs in judged.items() if q not in gone for d in docs if d not in corpus})
        n_dangling = sum(d not in corpus for q, docs in judged.items() if q not in gone for d in docs)
        if unknown_docs:
            report(f"gold {folder}: dropped {n_dangling} judgement(s) pointing at {len(unknown_docs)} unknown "
                   f"document(s): {_preview(unknown_docs)}")
        kept_ids = []
        for q, docs in sorted(judged.items()):
            if q in gone:
                continue
            docs = {d: r for d, r in docs.items() if d in corpus}
            if not docs:
                continue
            kept_ids.append(q)
            role = roles_here.get(q) or pinned_role.get(q)
            queries[q] = gold.queries[q]
            origin.setdefault(q, f"gold {folder}")
            if role:
                pinned_role[q] = role
                target = pinned[role].setdefault(q, {})
                target.update(unpinned.pop(q, {}))  # a query pinned anywhere keeps all its gold in its role
            else:
                target = unpinned.setdefault(q, {})
            target.update(docs)
            meta = dict(gold.metadata.get(q, {}))
            info.metadata[q] = {**info.metadata.get(q, {}), **meta}
            if q in gold.answers:
                answers[q] = list(gold.answers[q])
        counts = query_counts(gold, kept_ids)
        info.folders.append(GoldFolderInfo(
            path=str(folder), fingerprint=gold.fingerprint(), n_queries=len(kept_ids),
            n_judgements=sum(len(judged[q]) for q in kept_ids), counts=counts,
            dropped_stale=len(stale), dropped_dangling=n_dangling,
        ))
    if not merge and not unpinned and not any(pinned.values()):
        raise DatasetError("no gold judgement is left (--gold-mode replace): expected at least one gold query whose "
                           "documents still exist", path=spec.folders[0])
    info.reviewed = frozenset(q for q, m in info.metadata.items() if _truthy(m.get("reviewed")))
    qrels = {s: dict(t) for s, t in dataset.qrels.items()} if merge else {}
    if unpinned:
        qrels[GOLD_SPLIT] = unpinned
    for role, table in pinned.items():
        if table:
            qrels[pinned_split(role)] = table
    answers = {q: a for q, a in answers.items() if q in queries}
    out = Dataset(dataset.name, dataset.source, corpus, queries, qrels, [*dataset.warnings, *info.warnings], answers)
    return out, info




