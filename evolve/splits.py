"""Query roles: tune (the objective), holdout (promotion only), report (never used for a decision).

Which queries take part:

- **report**: the dataset's own ``test`` split when it also has ``train`` (SciFact), plus gold a folder pins to
  ``report`` (``qrels/report.tsv``). Gold never joins the report role otherwise.
- **tune / holdout**: the dataset's own source split (``train``; the single split when there is no train/test
  pair) and every gold query not pinned to report.

How a query gets its role:

1. A query whose *text* is a report query's text (normalised: NFC, casefold, whitespace collapsed) takes no role:
   SciFact's train queries 871 and 1291 repeat test queries 870 and 1292 word for word, with the same qrels, and
   tuning on them would tune on the report split. Ids alone do not catch that.
2. A text the study gave a role before keeps it (the study stores the role of every text it ever assigned, by a
   hash of the normalised text, so a query keeps its role when its id changes or it leaves and comes back, and a
   text once tuned on is never held out). Studies made before hashed roles keep their stored seeded split.
3. A role pinned by a gold folder (``qrels/tune.tsv``, ``qrels/holdout.tsv``).
4. Otherwise a seeded hash of the normalised text: ``sha256(seed, text) / 2**256 < holdout_fraction`` is holdout.
   Adding queries never moves old ones, and equal texts always share a role. With ``prefer_reviewed``, the new
   queries a person reviewed go to holdout first, then the others in hash order, until the holdout holds
   ``holdout_fraction`` of all queries; the roles are then stored with the study (rule 2), so they still never move,
   but the hash alone no longer reproduces them.

A role left with fewer than two queries takes the new queries whose hash lies nearest the threshold (tiny sets
only; once both roles have two queries by hash, nothing moves).
"""

from __future__ import annotations

import hashlib
import json
import logging
import unicodedata
from collections.abc import Collection
from dataclasses import asdict, dataclass, field

from evolve.datasets import Dataset
from evolve.errors import DatasetError

__all__ = [
    "GOLD_SPLIT",
    "QuerySplits",
    "is_gold_split",
    "make_splits",
    "pinned_split",
    "role_hash",
    "text_key",
    "text_role_key",
]

log = logging.getLogger("evolve.splits")

#: the dataset split that holds gold judgements without a pinned role (``--gold``)
GOLD_SPLIT = "gold"
_ROLES = ("tune", "holdout", "report")


def pinned_split(role: str) -> str:
    """The dataset split that holds gold judgements pinned to ``role`` (``gold.tune``, ``gold.holdout``, ``gold.report``)."""
    return f"{GOLD_SPLIT}.{role}"


def is_gold_split(split: str) -> bool:
    return split == GOLD_SPLIT or split.startswith(GOLD_SPLIT + ".")


def text_key(text: str) -> str:
    """A query's text as roles see it: NFC, casefolded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def text_role_key(text: str) -> str:
    """The short hash under which a study records the role of a text."""
    return hashlib.sha256(text_key(text).encode()).hexdigest()[:16]


def role_hash(text: str, seed: int) -> float:
    """A seeded hash of the normalised text, uniform in [0, 1)."""
    digest = hashlib.sha256(f"{int(seed)}\x1f{text_key(text)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class QuerySplits:
    """Query ids per role and the qrels splits each role reads its judgements from."""

    seed: int
    tune: tuple[str, ...]
    holdout: tuple[str, ...]
    report: tuple[str, ...]
    source_split: str | None
    report_split: str | None
    #: role -> dataset splits its judgements come from (later ones win per document); empty in old studies
    sources: dict = field(default_factory=dict)
    #: text key (:func:`text_role_key`) -> role, for every text the study ever gave a role (empty: an old study)
    text_roles: dict = field(default_factory=dict)
    #: ids kept out of tune and holdout because their text is a report query's text (or, out of holdout, a tune
    #: query's text)
    excluded: tuple[str, ...] = ()
    holdout_fraction: float = 0.3
    #: "hash" (roles by text hash) or "seeded" (a study made before hashed roles: a seeded shuffle of train)
    scheme: str = "seeded"

    def role_sources(self, role: str) -> tuple[str, ...]:
        if self.sources:
            return tuple(self.sources.get(role, ()))
        split = self.report_split if role == "report" else self.source_split
        return (split,) if split else ()

    def qrels(self, dataset: Dataset, role: str) -> dict[str, dict[str, int]]:
        ids = getattr(self, role)
        tables = [dataset.qrels[s] for s in self.role_sources(role) if s in dataset.qrels]
        out: dict[str, dict[str, int]] = {}
        for qid in ids:
            for table in tables:
                if qid in table:
                    out.setdefault(qid, {}).update(table[qid])
        return out

    def fingerprint(self, dataset: Dataset, role: str = "tune") -> str:
        """sha256 of the role's queries (id and text) and judgements: the tune gold fingerprint a trial records."""
        qrels = self.qrels(dataset, role)
        blob = [[q, dataset.queries.get(q, ""), sorted(qrels[q].items())] for q in sorted(qrels)]
        return hashlib.sha256(json.dumps(blob, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()

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
            source_split=d.get("source_split"),
            report_split=d.get("report_split"),
            sources={r: tuple(s) for r, s in (d.get("sources") or {}).items()},
            text_roles=dict(d.get("text_roles") or {}),
            excluded=tuple(d.get("excluded") or ()),
            holdout_fraction=float(d.get("holdout_fraction", 0.3)),
            scheme=d.get("scheme", "seeded"),
        )


def _own_splits(dataset: Dataset) -> tuple[str | None, str | None]:
    own = [s for s in dataset.splits if not is_gold_split(s)]
    if "train" in own and "test" in own:
        return "train", "test"
    if "train" in own:
        return "train", None
    if own:
        return ("test" if "test" in own else own[0]), None
    return None, None


def _recorded_roles(recorded: QuerySplits | None, dataset: Dataset) -> tuple[dict[str, str], dict[str, str]]:
    """(id -> role, text key -> role) the study gave before. A study made before hashed roles has no text roles:
    its ids keep their roles, and a new id with the text of one of them takes that text's role (tune winning)."""
    if recorded is None:
        return {}, {}
    if recorded.text_roles:
        return {}, dict(recorded.text_roles)
    by_id: dict[str, str] = {}
    by_key: dict[str, str] = {}
    for role in ("holdout", "tune"):  # tune last: a text that was tuned on is never held out
        for q in getattr(recorded, role):
            by_id[q] = role
            if q in dataset.queries:
                by_key[text_role_key(dataset.queries[q])] = role
    return by_id, by_key


def make_splits(
    dataset: Dataset,
    seed: int,
    holdout_fraction: float = 0.3,
    *,
    recorded: QuerySplits | None = None,
    reviewed: Collection[str] = (),
    prefer_reviewed: bool = False,
) -> QuerySplits:
    """The query roles of ``dataset`` (see the module docstring). ``recorded`` is the study's stored split: the
    texts it gave a role keep it. ``reviewed`` are the ids of queries a person reviewed (for ``prefer_reviewed``)."""
    if not 0.0 < holdout_fraction < 1.0:
        raise DatasetError(f"holdout fraction must be in (0, 1), got {holdout_fraction}")
    source, report_split = _own_splits(dataset)
    qrels = dataset.qrels
    pins = {role: set(qrels.get(pinned_split(role), {})) for role in _ROLES}
    for a, b in (("tune", "holdout"), ("tune", "report"), ("holdout", "report")):
        both = sorted(pins[a] & pins[b])
        if both:
            raise DatasetError(f"query '{both[0]}' is pinned to both {a} and {b}: expected one role per query",
                               path=dataset.source)
    report_ids = (set(qrels.get(report_split, {})) if report_split else set()) | pins["report"]
    candidates = set(qrels.get(source, {})) if source else set()
    candidates |= set(qrels.get(GOLD_SPLIT, {})) | pins["tune"] | pins["holdout"]
    candidates -= report_ids

    def text(q: str) -> str:
        return dataset.queries.get(q, "")

    report_texts = {text_key(text(q)): q for q in report_ids}
    excluded = sorted(q for q in candidates if text_key(text(q)) in report_texts)
    if excluded:
        shown = ", ".join(f"'{q}' = report '{report_texts[text_key(text(q))]}'" for q in excluded[:3])
        log.info("kept %d quer(y/ies) out of tune and holdout: same text as a report query (%s%s)",
                 len(excluded), shown, ", ..." if len(excluded) > 3 else "")
    candidates -= set(excluded)
    if len(candidates) < 4:
        where = f"split '{source}'" if source else "the dataset"
        raise DatasetError(
            f"{where} and the gold have {len(candidates)} judged quer(y/ies) for tune and holdout: expected at least 4 "
            "(add gold with --gold DIR)",
            path=dataset.source,
        )

    known_ids, known = _recorded_roles(recorded, dataset)
    role: dict[str, str] = {}
    new: list[str] = []
    for q in sorted(candidates):
        key = text_role_key(text(q))
        pin = "tune" if q in pins["tune"] else "holdout" if q in pins["holdout"] else None
        before = known_ids.get(q) or known.get(key)
        if before:
            role[q] = before
            if pin and pin != before:
                log.warning("query '%s' is pinned to %s but the study gave it the role %s before: it stays %s",
                            q, pin, before, before)
        elif pin:
            role[q] = pin
        else:
            new.append(q)

    by_hash = sorted(new, key=lambda q: (role_hash(text(q), seed), q))
    if prefer_reviewed:
        reviewed = set(reviewed)
        target = round(holdout_fraction * len(candidates))
        n_hold = sum(r == "holdout" for r in role.values())
        ordered = [q for q in by_hash if q in reviewed] + [q for q in by_hash if q not in reviewed]
        for q in ordered:
            if n_hold < target:
                role[q] = "holdout"
                n_hold += 1
            else:
                role[q] = "tune"
    else:
        for q in by_hash:
            role[q] = "holdout" if role_hash(text(q), seed) < holdout_fraction else "tune"
    # a text that is tuned on is never held out (equal texts share a hash role; this catches pins and old splits)
    tuned = {text_key(text(q)) for q, r in role.items() if r == "tune"}
    twins = sorted(q for q, r in role.items() if r == "holdout" and text_key(text(q)) in tuned)
    if twins:
        log.info("kept %d quer(y/ies) out of holdout: same text as a tune query (%s)", len(twins), ", ".join(twins[:3]))
        for q in twins:
            del role[q]
        excluded = sorted([*excluded, *twins])
    _top_up(role, [q for q in new if q in role], text, seed)

    text_roles = dict(known)
    for q, r in sorted(role.items(), key=lambda kv: kv[1] == "tune"):  # tune last: it wins for equal texts
        key = text_role_key(text(q))
        if key not in known:
            text_roles[key] = r
    tune_sources = tuple(s for s in (source, GOLD_SPLIT, pinned_split("tune")) if s and s in qrels)
    holdout_sources = tuple(s for s in (source, GOLD_SPLIT, pinned_split("holdout")) if s and s in qrels)
    report_sources = tuple(s for s in (report_split, pinned_split("report")) if s and s in qrels)
    return QuerySplits(
        seed=seed,
        tune=tuple(sorted(q for q, r in role.items() if r == "tune")),
        holdout=tuple(sorted(q for q, r in role.items() if r == "holdout")),
        report=tuple(sorted(report_ids)),
        source_split=source,
        report_split=report_split,
        sources={"tune": tune_sources, "holdout": holdout_sources, "report": report_sources},
        text_roles=dict(sorted(text_roles.items())),
        excluded=tuple(excluded),
        holdout_fraction=holdout_fraction,
        scheme="hash",
    )


def _top_up(role: dict[str, str], new: list[str], text, seed: int) -> None:
    """Give a role with fewer than two queries the new queries whose hash lies nearest the threshold."""
    for short, other in (("holdout", "tune"), ("tune", "holdout")):
        need = 2 - sum(r == short for r in role.values())
        if need <= 0:
            continue
        movable = [q for q in new if role[q] == other]
        # nearest the threshold: for holdout the smallest hashes among tune queries, for tune the largest
        movable.sort(key=lambda q: role_hash(text(q), seed), reverse=(short == "tune"))
        groups: dict[str, list[str]] = {}
        for q in movable:
            groups.setdefault(text_key(text(q)), []).append(q)
        spare = sum(r == other for r in role.values())
        for qs in groups.values():
            if need <= 0 or spare - len(qs) < 2:
                break
            for q in qs:
                role[q] = short
            need -= len(qs)
            spare -= len(qs)
