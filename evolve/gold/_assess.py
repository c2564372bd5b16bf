"""What a gold set is worth: its size and mix, how much a person or a judge checked, how much its questions copy
their passages, and whether it is large enough to promote anything (:mod:`evolve.gold._power`)."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

from evolve.gold._apply import GoldInfo, GoldSpec, query_counts
from evolve.gold._folder import read_gold

__all__ = ["Assessment", "assess_folders", "overlap_of"]


def overlap_of(meta: dict, provenance: list[dict]) -> float | None:
    """A generated query's lexical overlap with its passage: metadata ``overlap``, else the first provenance record
    that has one (``overlap``, or ``filters.overlap`` as a number or ``{"value": ...}``)."""
    candidates = [meta.get("overlap")]
    for rec in provenance:
        candidates.append(rec.get("overlap"))
        filters = rec.get("filters")
        if isinstance(filters, dict):
            f = filters.get("overlap")
            candidates.append(f.get("value", f.get("score")) if isinstance(f, dict) else f)
    for c in candidates:
        if isinstance(c, (int, float)) and not isinstance(c, bool):
            return float(c)
    return None


@dataclass
class Assessment:
    folders: tuple[str, ...]
    n_queries: int
    kinds: Counter = field(default_factory=Counter)
    langs: Counter = field(default_factory=Counter)
    overlap: list[float] = field(default_factory=list)
    n_reviewed: int = 0
    n_judged: int = 0
    dropped_stale: int = 0
    dropped_dangling: int = 0

    def overlap_summary(self) -> dict[str, float] | None:
        if not self.overlap:
            return None
        v = sorted(self.overlap)
        q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0]] * 3
        return {"min": v[0], "p25": q[0], "median": q[1], "p75": q[2], "max": v[-1], "mean": statistics.fmean(v)}

    def overlap_histogram(self) -> list[tuple[str, int]]:
        edges = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
        out = []
        for i in range(5):
            lo, hi = edges[i], edges[i + 1]
            n = sum(lo <= x < hi or (i == 4 and x == hi) for x in self.overlap)
            out.append((f"[{lo:.1f}, {hi:.1f}{']' if i == 4 else ')'}", n))
        return out


def assess_folders(spec: GoldSpec, info: GoldInfo | None = None) -> Assessment:
    """Counts over the gold queries of ``spec``'s folders: those kept on load when ``info`` (from
    :func:`~evolve.gold.apply_gold`) is given, else every query of the folders."""
    seen: set[str] = set()
    a = Assessment(spec.folders, 0)
    for folder in spec.folders:
        gold = read_gold(folder)
        qids = [q for q in sorted(gold.all_qrels()) if q not in seen and (info is None or q in info.metadata)]
        seen.update(qids)
        counts = query_counts(gold, qids)
        a.n_judged += counts["judged"]
        a.n_reviewed += counts["reviewed"]
        for q in qids:
            meta = gold.metadata.get(q, {})
            a.kinds[str(meta.get("kind") or "unknown")] += 1
            a.langs[str(meta.get("lang") or "unknown")] += 1
            ov = overlap_of(meta, gold.provenance.get(q, []))
            if ov is not None:
                a.overlap.append(ov)
    a.n_queries = len(seen)
    if info is not None:
        a.dropped_stale, a.dropped_dangling = info.dropped_stale, info.dropped_dangling
    return a

