"""Interleaving counted in queries, not searches: what ``benchmarks/feedback_loop.py`` reads, and its test.

Three users searching one query are one observation: the searches of a query text (NFC, case-folded, whitespace
collapsed, as feedback gold groups them) are summed into one win, tie or loss.
"""

from __future__ import annotations

__all__ = ["per_query", "searches_of", "interleaving_at"]


def per_query(queries: list[dict], events: list[dict], order: list[str]) -> list[int]:
    """One interleaving observation per distinct query text, in ``order``: the sign of the searches the challenger won
    minus those it lost, as the gate counts it (:func:`evolve.feedback.query_margins`, one pair expected)."""
    return [(m > 0) - (m < 0) for m, _ in _of_texts(queries, events, order)]


def searches_of(queries: list[dict], events: list[dict], order: list[str]) -> list[int]:
    """The searches behind each distinct text of ``order``."""
    return [n for _, n in _of_texts(queries, events, order)]


def _of_texts(queries, events, order):
    from evolve.feedback import query_margins
    from evolve.feedback._grades import query_key

    margins = query_margins(queries, events)
    if len(margins) > 1:
        raise ValueError(f"expected the records of one champion/challenger pair, got {len(margins)} pairs")
    texts = next(iter(margins.values()), {})
    keys = list(dict.fromkeys(query_key(t) for t in order))  # two ids with one text are one query
    return [texts.get(k, (0, 0)) for k in keys]


def interleaving_at(outcomes: list[int], n: int, searches: int = 0) -> tuple[bool, str]:
    """The gate's own interleaving check over the first ``n`` query observations (``searches``: the searches
    behind them, for the message)."""
    from evolve.feedback import InterleavingResult, interleaving_gate

    head = outcomes[:n]
    res = InterleavingResult("champion", "challenger", wins=head.count(1), ties=head.count(0), losses=head.count(-1),
                             searches=searches)
    return interleaving_gate([res], "champion", "challenger")
