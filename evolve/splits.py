"""Query roles: tune (the objective), holdout (promotion only), report (never used for a decision)."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass

from evolve.datasets import Dataset
from evolve.errors import DatasetError

__all__ = ["QuerySplits", "make_splits"]


@dataclass(frozen=True)
class QuerySplits:
    """Query ids per role and the qrels split each role reads its judgements from."""

    seed: int
    tune: tuple[str, ...]
    holdout: tuple[str, ...]
    report: tuple[str, ...]
    source_split: str
    report_split: str | None

    def qrels(self, dataset: Dataset, role: str) -> dict[str, dict[str, int]]:
        ids = getattr(self, role)
        split = self.report_split if role == "report" else self.source_split
        if split is None:
            return {}
        q = dataset.qrels.get(split, {})
        return {qid: q[qid] for qid in ids if qid in q}

    def holdout_fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(sorted(self.holdout)).encode()).hexdigest()

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> QuerySplits:
        return cls(
            seed=int(d["seed"]),
            tune=tuple(d["tune"]),
            holdout=tuple(d["holdout"]),
            report=tuple(d["report"]),
            source_split=d["source_split"],
            report_split=d.get("report_split"),
        )


def make_splits(dataset: Dataset, seed: int, holdout_fraction: float = 0.3) -> QuerySplits:
    """With ``train`` and ``test`` qrels: tune/holdout is a seeded split of train, test is the report split.
    Otherwise the queries of the single (or first) split are split seeded into tune and holdout."""
    if not 0.0 < holdout_fraction < 1.0:
        raise DatasetError(f"holdout fraction must be in (0, 1), got {holdout_fraction}")
    splits = dataset.splits
    if "train" in splits and "test" in splits:
        source, report_split = "train", "test"
    elif "train" in splits:
        source, report_split = "train", None
    else:
        source, report_split = ("test" if "test" in splits else splits[0]), None
    qids = sorted(dataset.qrels[source])
    if len(qids) < 4:
        raise DatasetError(f"split '{source}' has {len(qids)} judged queries: expected at least 4 to split into tune and holdout",
                           path=dataset.source)
    rng = random.Random(seed)
    shuffled = qids[:]
    rng.shuffle(shuffled)
    n_hold = max(2, round(len(qids) * holdout_fraction))
    holdout = tuple(sorted(shuffled[:n_hold]))
    tune = tuple(sorted(shuffled[n_hold:]))
    report = tuple(sorted(dataset.qrels[report_split])) if report_split else ()
    return QuerySplits(seed, tune, holdout, report, source, report_split)
