"""From events to graded judgements: explicit marks, and clicks weighed by COEC.

Rules (docs/serve.md states them for users):

* ``answered`` 3, ``useful`` 2, ``not_useful`` 0: a person's explicit mark.
* ``answer_helpful`` on a written answer (``POST /v1/answer``) gives 2 to each document the answer cites
  (``query_attributes.answer.cited``): the person found an answer built on them useful. ``answer_wrong`` and
  ``answer_no_answer`` judge no document (the model may have misread a relevant passage); a later one from the
  same person withdraws that person's earlier ``answer_helpful`` on that answer's documents. ``citation_click``
  judges nothing either (it is evidence, counted per pair, and not a click of the result list: COEC's CTR(rank)
  is about the list's ranks).
* ``click`` 1, but only where the document's COEC for the query is at least 1 and the document was shown at
  least ``min_impressions`` times for it. COEC ("clicks over expected clicks", as in OpenSearch's Search
  Relevance Workbench, ``CoecClickModel``) divides the clicks a document got by the clicks an average document
  gets at the ranks it was shown at: ``EC = sum over its impressions of CTR(rank)``, where ``CTR(rank)`` is the
  click-through rate of that rank over every query. A COEC of 1 or more means it drew more clicks than its
  positions explain. A click below that is no judgement at all (not a 0): few clicks is weak evidence.
* Per person (UBI ``client_id``), for one query and document: the latest explicit mark on the document wins over
  earlier ones; without one, the person's latest verdict on an answer that cited it (``answer_helpful`` 2); without
  either, the person's click. So an answer's grade never overrides what the same person said about the document
  itself (``not_useful`` stays 0, ``answered`` stays 3), and it outranks a bare click.
* Across people: the mean of their grades, rounded half up.
* Failures (``evolve feedback stats``): per query, the ``no_answer`` marks on the list, the ``answer_wrong`` and
  ``answer_no_answer`` verdicts, and the searches whose answer was a refusal (``query_attributes.answer.refused``).
* Queries are grouped by their text (NFC, case-folded, whitespace collapsed), as SRW groups by ``user_query``;
  impressions are the hits each query record shows (``query_response_hit_ids``), so no impression events are
  needed; a search answered by ``POST /v1/answer`` lists its answer's sources there, not a result list, and adds
  no impressions (the page shows its result list from ``POST /v1/retrieve``, a record of its own). A query stored without its text (``--no-query-text``) cannot become a gold query and is counted apart.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field

__all__ = ["GradeRules", "PairJudgement", "Failure", "FeedbackJudgements", "grade_feedback", "query_key",
           "gold_query_id"]

EXPLICIT = {"answered": 3, "useful": 2, "not_useful": 0}


@dataclass(frozen=True)
class GradeRules:
    min_impressions: int = 5
    min_coec: float = 1.0
    click_grade: int = 1
    #: what ``answer_helpful`` gives each cited document
    helpful_grade: int = 2


def query_key(text: str) -> str:
    """What makes two searches the same query: NFC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def gold_query_id(key: str) -> str:
    return "fb-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


@dataclass
class PairJudgement:
    """One (query, document) pair: the grade (None: no judgement) and the evidence behind it."""

    query: str
    doc_id: str
    grade: int | None
    events: dict[str, int]
    impressions: int
    clicks: int
    coec: float
    client_grades: dict[str, int]


@dataclass(frozen=True)
class Failure:
    """One query on the failure list: what went wrong with it, counted."""

    query: str
    text: str
    #: ``no_answer`` marks on the result list
    no_answer: int = 0
    #: ``answer_wrong`` verdicts on its answers
    wrong: int = 0
    #: ``answer_no_answer`` verdicts ("didn't answer")
    not_answered: int = 0
    #: searches whose answer was a refusal ("not found in these documents")
    refused: int = 0

    @property
    def total(self) -> int:
        return self.no_answer + self.wrong + self.not_answered + self.refused


@dataclass
class FeedbackJudgements:
    #: query key -> the text people typed most often for it
    texts: dict[str, str]
    #: query key -> number of searches
    searches: dict[str, int]
    #: query key -> distinct clients
    clients: dict[str, int]
    pairs: list[PairJudgement]
    #: query key -> no_answer events
    no_answer: dict[str, int]
    #: query records without a text (--no-query-text): they cannot become gold queries
    without_text: int = 0
    #: rank -> click-through rate over every query
    rank_ctr: dict[int, float] = field(default_factory=dict)
    #: query key -> searches answered by POST /v1/answer, and of those refused
    answers: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    #: query key -> verdicts on its answers: action (answer_helpful, answer_wrong, answer_no_answer) -> count
    verdicts: dict[str, dict[str, int]] = field(default_factory=dict)
    #: searches whose answer failed (the LLM unreachable, timed out, cut off): the server's trouble, not a failure
    #: of the documents, so not on the failure list
    answers_failed: int = 0

    def failures(self) -> list[Failure]:
        """Every query with a ``no_answer`` mark, a wrong or not-answering verdict, or a refused answer; most
        failures first, then by text."""
        keys = set(self.no_answer) | set(self.refused) | {
            k for k, v in self.verdicts.items() if v.get("answer_wrong") or v.get("answer_no_answer")}
        rows = [Failure(k, self.texts[k], self.no_answer.get(k, 0), self.verdicts.get(k, {}).get("answer_wrong", 0),
                        self.verdicts.get(k, {}).get("answer_no_answer", 0), self.refused.get(k, 0)) for k in keys]
        return sorted(rows, key=lambda f: (-f.total, f.query))

    def qrels(self) -> dict[str, dict[str, int]]:
        """query key -> doc -> grade, for queries with at least one grade above 0."""
        out: dict[str, dict[str, int]] = defaultdict(dict)
        for p in self.pairs:
            if p.grade is not None:
                out[p.query][p.doc_id] = p.grade
        return {q: d for q, d in out.items() if any(g > 0 for g in d.values())}


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def grade_feedback(queries: list[dict], events: list[dict], rules: GradeRules | None = None) -> FeedbackJudgements:
    """Judgements from UBI query and event records (see the module docstring for the rules)."""
    from evolve.feedback._checks import answer_of, answer_state, cited_of
    from evolve.feedback._records import VERDICT_ACTIONS

    rules = rules or GradeRules()
    by_id: dict[str, dict] = {}
    answers: Counter = Counter()
    refused: Counter = Counter()
    failed = 0
    texts: dict[str, Counter] = defaultdict(Counter)
    searches: Counter = Counter()
    clients: dict[str, set] = defaultdict(set)
    without_text = 0
    impressions: dict[tuple[str, str], list[int]] = defaultdict(list)
    shown_at_rank: Counter = Counter()
    for q in queries:
        failed += answer_state(q) == "failed"
        text = q.get("user_query") or ""
        if not text.strip():
            without_text += 1
            continue
        key = query_key(text)
        by_id[q["query_id"]] = {"key": key, "hits": q.get("query_response_hit_ids") or [], "cited": list(cited_of(q))}
        answer = answer_of(q)
        if answer is not None:
            answers[key] += 1
            refused[key] += bool(answer.get("refused"))
        texts[key][text.strip()] += 1
        searches[key] += 1
        clients[key].add(q.get("client_id", ""))
        if answer_state(q) is not None:
            continue  # its hits are the answer's sources, not a result list: COEC is about the list's ranks
        for r, doc in enumerate(by_id[q["query_id"]]["hits"], 1):
            impressions[(key, doc)].append(r)
            shown_at_rank[r] += 1

    clicked: set[tuple[str, str]] = set()  # (query_id, doc): one click per list and document
    clicks: Counter = Counter()
    clicks_at_rank: Counter = Counter()
    clickers: dict[tuple[str, str], set] = defaultdict(set)
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    latest: dict[tuple[str, str, str], tuple[str, str]] = {}  # (key, doc, client) -> (timestamp, action)
    verdict: dict[tuple[str, str, str], str] = {}  # (key, cited doc, client) -> the latest verdict on an answer
    verdicts: dict[str, Counter] = defaultdict(Counter)
    no_answer: Counter = Counter()
    for e in sorted(events, key=lambda e: (e.get("timestamp", ""), e.get("event_id", ""))):
        q = by_id.get(e.get("query_id"))
        if q is None:
            continue  # its query was deleted, or stored without text
        action = e.get("action_name")
        attrs = e.get("event_attributes") or {}
        client = e.get("client_id", "")
        if action == "no_answer":
            no_answer[q["key"]] += 1
            continue
        if action in VERDICT_ACTIONS:
            verdicts[q["key"]][action] += 1
            for doc in q["cited"]:
                counts[(q["key"], doc)][action] += 1
                verdict[(q["key"], doc, client)] = action
            continue
        doc = (attrs.get("object") or {}).get("object_id")
        if doc is None:
            continue
        pair = (q["key"], doc)
        counts[pair][action] += 1
        if action == "click":
            if (e["query_id"], doc) in clicked:
                continue
            clicked.add((e["query_id"], doc))
            clicks[pair] += 1
            rank = int((attrs.get("position") or {}).get("ordinal") or 0)
            clicks_at_rank[rank] += 1
            clickers[pair].add(client)
        elif action in EXPLICIT:
            latest[(q["key"], doc, client)] = (e.get("timestamp", ""), action)

    rank_ctr = {r: clicks_at_rank[r] / n for r, n in sorted(shown_at_rank.items()) if n}
    explicit_by_pair: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for (key, doc, client), (_, action) in latest.items():
        explicit_by_pair[(key, doc)][client] = EXPLICIT[action]

    helpful_by_pair: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for (key, doc, client), action in verdict.items():
        if action == "answer_helpful":
            helpful_by_pair[(key, doc)][client] = rules.helpful_grade

    pairs: list[PairJudgement] = []
    for pair in sorted(set(counts) | set(explicit_by_pair)):
        key, doc = pair
        shown = impressions.get(pair, [])
        expected = sum(rank_ctr.get(r, 0.0) for r in shown)
        coec = clicks[pair] / expected if expected > 0 else 0.0
        client_grades = dict(explicit_by_pair.get(pair, {}))
        for client, g in helpful_by_pair.get(pair, {}).items():
            client_grades.setdefault(client, g)  # a person's mark on the document itself wins over the answer's
        click_counts = len(shown) >= rules.min_impressions and coec >= rules.min_coec
        for client in clickers.get(pair, ()):
            if client not in client_grades and click_counts:
                client_grades[client] = rules.click_grade
        grade = _round_half_up(sum(client_grades.values()) / len(client_grades)) if client_grades else None
        pairs.append(PairJudgement(key, doc, grade, dict(counts[pair]), len(shown), clicks[pair], coec, client_grades))
    return FeedbackJudgements(
        texts={k: c.most_common(1)[0][0] for k, c in texts.items()},
        searches=dict(searches),
        clients={k: len(v) for k, v in clients.items()},
        pairs=pairs,
        no_answer=dict(no_answer),
        without_text=without_text,
        rank_ctr=rank_ctr,
        answers=dict(answers),
        refused={k: n for k, n in refused.items() if n},
        verdicts={k: dict(v) for k, v in verdicts.items()},
        answers_failed=failed,
    )
