"""Team-Draft Interleaving (Radlinski, Kurup and Joachims, CIKM 2008), as Solr's LTR interleaving and
OpenSearch's ab_tests do it.

Two captains (the champion ``A`` and the challenger ``B``) pick in turns; whoever has fewer picks goes next, a
tie is decided by a coin. Each pick is the captain's best document not shown yet. The merged list records which
side contributed each document; a click or mark later credits that side (:mod:`evolve.feedback._interleaving`).
The coin is seeded by the query id, so a query's merge can be replayed exactly.
"""

from __future__ import annotations

import hashlib
import random

__all__ = ["CHAMPION", "CHALLENGER", "team_draft"]

CHAMPION, CHALLENGER = "champion", "challenger"


def team_draft(a: list[str], b: list[str], k: int, seed: str) -> tuple[list[str], dict[str, str]]:
    """Merge ranked lists ``a`` (champion) and ``b`` (challenger) into at most ``k`` documents.

    Returns the merged ids and ``{doc id: "champion" | "challenger"}``. When one list runs out, the other one
    fills the rest.
    """
    rng = random.Random(int.from_bytes(hashlib.sha256(seed.encode("utf-8")).digest()[:8], "big"))
    merged: list[str] = []
    teams: dict[str, str] = {}
    picks = {CHAMPION: 0, CHALLENGER: 0}
    lists = {CHAMPION: a, CHALLENGER: b}
    cursor = {CHAMPION: 0, CHALLENGER: 0}

    def next_unshown(side: str) -> str | None:
        lst, i = lists[side], cursor[side]
        while i < len(lst) and lst[i] in teams:
            i += 1
        cursor[side] = i
        return lst[i] if i < len(lst) else None

    while len(merged) < k:
        if picks[CHAMPION] < picks[CHALLENGER]:
            side = CHAMPION
        elif picks[CHALLENGER] < picks[CHAMPION]:
            side = CHALLENGER
        else:
            side = CHAMPION if rng.random() < 0.5 else CHALLENGER
        doc = next_unshown(side)
        if doc is None:
            side = CHALLENGER if side == CHAMPION else CHAMPION
            doc = next_unshown(side)
            if doc is None:
                break
        merged.append(doc)
        teams[doc] = side
        picks[side] += 1
    return merged, teams
