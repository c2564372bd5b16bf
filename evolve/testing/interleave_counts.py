"""Interleaving counted in queries, not searches: what ``benchmarks/feedback_loop.py`` reads, and its test.

Three users searching one query are one observation: the searches of a query text (NFC, case-folded, whitespace
collapsed, as feedback gold groups them) are summed into one win, tie or loss.
"""

from __future__ import annotations

__all__ = ["per_query", "interleaving_at"]


def per_query(queries: list[dict], events: list[dict], order: list[str]) -> list[int]:
    """One interleaving observation per query text, in ``order``: +1 when the challenger won more of the text's
    searches than it lost, -1 for the reverse, 0 otherwise (three users searching one query are one observation)."""
    from evolve.feedback import interleaving_results
    from evolve.feedback._grades import query_key as key

    by_q: dict[str, list[dict]] = {}
    for e in events:
        by_q.setdefault(e["query_id"], []).append(e)

    by_text: dict[str, list[dict]] = {}
    for q in queries:
        by_text.setdefault(key(q["user_query"]), []).append(q)
    out = []
    for text in order:
        group = by_text.get(key(text), [])
        results = interleaving_results(group, [e for q in group for e in by_q.get(q["query_id"], [])])
        diff = sum(r.wins - r.losses for r in results)
        out.append((diff > 0) - (diff < 0))
    return out


def interleaving_at(outcomes: list[int], n: int, searches: int = 0) -> tuple[bool, str]:
    """The gate's own interleaving check over the first ``n`` query observations (``searches``: the searches
    behind them, for the message)."""
    from evolve.feedback import InterleavingResult, interleaving_gate

    head = outcomes[:n]
    res = InterleavingResult("champion", "challenger", wins=head.count(1), ties=head.count(0), losses=head.count(-1),
                             searches=searches)
    return interleaving_gate([res], "champion", "challenger")
