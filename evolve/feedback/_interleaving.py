"""Who won each interleaved query, and whether the challenger wins significantly.

Each query record made under ``evolve serve --challenger`` says which side (champion or challenger) contributed
each shown document (``query_attributes.interleaving.teams``). A query's credit for a side is the number of
distinct documents of that side that got a positive event (``click``, ``useful``, ``answered``); the side with
more credit wins the search, equal credit (none at all included) is a tie.

Observations are **queries, not searches**: the searches of one query text (NFC, case-folded, whitespace
collapsed: :func:`~evolve.feedback._grades.query_key`, as feedback gold groups them) make one observation, a win
when the challenger won more of them than it lost, a loss for the reverse, a tie otherwise. Three people repeating
one query are one piece of evidence, not three, so the sign test's independence assumption is about queries.
A search stored without its text (``evolve serve --no-query-text``) cannot be grouped: each such search is its own
observation, as every search was before.
Wins and losses are compared with a one-sided sign test (``scipy.stats.binomtest``, H1: the challenger wins more
often than it loses).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

__all__ = ["POSITIVE", "InterleavingResult", "interleaving_results", "interleaving_gate", "query_margins", "sign_test"]

POSITIVE = ("click", "useful", "answered")


def sign_test(wins: int, losses: int) -> float:
    """One-sided sign test p-value of ``wins`` over ``wins + losses`` (H1: wins are more likely)."""
    if wins + losses == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)


@dataclass
class InterleavingResult:
    champion_fingerprint: str
    challenger_fingerprint: str
    champion_versions: list[str] = field(default_factory=list)
    challenger_versions: list[str] = field(default_factory=list)
    wins: int = 0
    ties: int = 0
    losses: int = 0
    #: interleaved searches behind the observations (a query searched by three people: 3 searches, 1 query)
    searches: int = 0

    @property
    def queries(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def preferences(self) -> int:
        return self.wins + self.losses

    @property
    def p_value(self) -> float:
        return sign_test(self.wins, self.losses)

    def as_dict(self) -> dict:
        return {"champion_fingerprint": self.champion_fingerprint, "challenger_fingerprint": self.challenger_fingerprint,
                "champion_versions": self.champion_versions, "challenger_versions": self.challenger_versions,
                "wins": self.wins, "ties": self.ties, "losses": self.losses, "queries": self.queries,
                "searches": self.searches, "p_value": self.p_value}


def _text_key(q: dict) -> str:
    """What groups searches into one observation: the query text's :func:`~evolve.feedback._grades.query_key`; a
    search stored without its text (``evolve serve --no-query-text``) cannot be grouped and is its own one."""
    from evolve.feedback._grades import query_key

    key = query_key(q.get("user_query") or "")
    return key if key else "\0search:" + str(q.get("query_id"))


def _tally(queries: list[dict], events: list[dict]):
    """Per (champion, challenger) pair: a result with its versions and searches, and per text key the searches the
    challenger won minus those it lost, and the searches behind it."""
    credited: dict[str, set] = defaultdict(set)  # query id -> documents with a positive event
    for e in events:
        if e.get("action_name") not in POSITIVE:
            continue
        attrs = e.get("event_attributes") or {}
        doc = (attrs.get("object") or {}).get("object_id")
        if doc is not None:
            credited[e["query_id"]].add(doc)
    out: dict[tuple[str, str], InterleavingResult] = {}
    margins: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(dict)  # pair -> text -> [won - lost, searches]
    for q in queries:
        inter = (q.get("query_attributes") or {}).get("interleaving")
        if not inter:
            continue
        a, b = inter["champion"], inter["challenger"]
        key = (a["config_fingerprint"], b["config_fingerprint"])
        res = out.get(key)
        if res is None:
            res = out[key] = InterleavingResult(*key)
        for where, version in ((res.champion_versions, a["config_version"]), (res.challenger_versions, b["config_version"])):
            if version not in where:
                where.append(version)
        docs = credited.get(q["query_id"], set())
        side = dict(zip(q.get("query_response_hit_ids") or [], inter.get("teams") or []))
        champ = sum(1 for d in docs if side.get(d) == "champion")
        chall = sum(1 for d in docs if side.get(d) == "challenger")
        tally = margins[key].setdefault(_text_key(q), [0, 0])
        tally[0] += (chall > champ) - (champ > chall)
        tally[1] += 1
        res.searches += 1
    return out, margins


def query_margins(queries: list[dict], events: list[dict]) -> dict[tuple[str, str], dict[str, tuple[int, int]]]:
    """Per (champion, challenger) fingerprint pair, per query text (its ``query_key``): (searches the challenger
    won minus searches it lost, searches). The observation :func:`interleaving_results` counts is the margin's sign."""
    _, margins = _tally(queries, events)
    return {pair: {k: (m, n) for k, (m, n) in texts.items()} for pair, texts in margins.items()}


def interleaving_results(queries: list[dict], events: list[dict]) -> list[InterleavingResult]:
    """One result per (champion config, challenger config) pair, from the store's records, counted in distinct
    query texts (see the module's docstring)."""
    out, margins = _tally(queries, events)
    for key, res in out.items():
        for m, _ in margins[key].values():
            if m > 0:
                res.wins += 1
            elif m < 0:
                res.losses += 1
            else:
                res.ties += 1
    return list(out.values())


def interleaving_gate(results: list[InterleavingResult], champion_fingerprint: str, candidate_fingerprint: str, *,
                      min_preferences: int = 30, max_p: float = 0.05) -> tuple[bool, str]:
    """``promote-config --require-interleaving``: the candidate must have been interleaved against this champion
    and won significantly (wins > losses, one-sided sign test p <= max_p, at least ``min_preferences`` queries
    with a preference). Returns (passed, one-line reason)."""
    match = next((r for r in results if r.champion_fingerprint == champion_fingerprint
                  and r.challenger_fingerprint == candidate_fingerprint), None)
    if match is None:
        return False, ("no interleaving of this candidate against the current champion in the feedback store: "
                       "expected `evolve serve --challenger TRIAL` to have run")
    w, t, loss, p = match.wins, match.ties, match.losses, match.p_value
    behind = f" (queries; {match.searches} searches)" if match.searches else " (queries)"
    told = f"{w} wins, {t} ties, {loss} losses{behind}, sign test p = {p:.4f}"
    if match.preferences < min_preferences:
        return False, f"interleaving: {told}: expected at least {min_preferences} queries with a preference, got {match.preferences}"
    if w <= loss or p > max_p:
        return False, f"interleaving: {told}: expected wins > losses with p <= {max_p}"
    return True, f"interleaving: {told} <= {max_p}"
