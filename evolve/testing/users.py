"""Scripted users for tests and benchmarks: a STAND-IN for people, named as one.

They act under a cascade model with position-dependent examination (Craswell et al., WSDM 2008, with the
examination decay of the position-based model), and a dataset's qrels decide what is relevant:

* a user scans the list top-down, at most ``depth`` results;
* she examines rank ``r`` (having come that far) with probability ``examine ** (r - 1)``;
* an examined relevant document (qrels grade > 0) is clicked with probability ``click_relevant``; an examined
  non-relevant one with ``click_other`` (noise: titles mislead);
* after opening a relevant document she marks it ``answered`` with probability ``answer`` and stops (the
  cascade's satisfaction), or else marks it ``useful`` with probability ``useful`` and scans on;
* after opening a non-relevant document she marks it ``not_useful`` with probability ``not_useful``;
* reaching the end unsatisfied with nothing relevant opened, she says ``no_answer`` with probability
  ``give_up``.

Every draw comes from a ``random.Random`` seeded by (seed, user, query id), so a run is replayed exactly.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

__all__ = ["CascadeUser", "Action", "simulate"]


@dataclass(frozen=True)
class Action:
    action_name: str
    doc_id: str | None
    rank: int  # 1-based; 0 for no_answer


@dataclass(frozen=True)
class CascadeUser:
    user: str
    seed: int = 0
    depth: int = 10
    examine: float = 0.92
    click_relevant: float = 0.85
    click_other: float = 0.06
    answer: float = 0.3
    useful: float = 0.6
    not_useful: float = 0.5
    give_up: float = 0.6

    def _rng(self, query_key: str) -> random.Random:
        digest = hashlib.sha256(f"{self.seed}:{self.user}:{query_key}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def act(self, query_key: str, ranked: list[str], relevant: dict[str, int]) -> list[Action]:
        """What this user does with ``ranked`` (doc ids, best first) for the query ``query_key`` whose
        judgements are ``relevant`` (doc id -> grade)."""
        rng = self._rng(query_key)
        actions: list[Action] = []
        opened_relevant = False
        for r, doc in enumerate(ranked[: self.depth], 1):
            if rng.random() >= self.examine ** (r - 1):
                continue
            rel = relevant.get(doc, 0) > 0
            if rng.random() >= (self.click_relevant if rel else self.click_other):
                continue
            actions.append(Action("click", doc, r))
            if rel:
                opened_relevant = True
                if rng.random() < self.answer:
                    actions.append(Action("answered", doc, r))
                    return actions
                if rng.random() < self.useful:
                    actions.append(Action("useful", doc, r))
            elif rng.random() < self.not_useful:
                actions.append(Action("not_useful", doc, r))
        if not opened_relevant and rng.random() < self.give_up:
            actions.append(Action("no_answer", None, 0))
        return actions


def simulate(post, url: str, queries: dict[str, str], qrels: dict[str, dict[str, int]], users: list[CascadeUser],
             *, k: int = 10, key: str | None = None) -> dict:
    """Every user searches every query through the HTTP API (``post(url, body, key=...)``) and acts on the list.
    Returns counts and the acknowledged event ids."""
    searches, acked, versions = 0, [], set()
    for user in users:
        for qid, text in queries.items():
            r = post(url + "/v1/retrieve", {"query": text, "k": k, "client_id": user.user}, key=key)
            r.raise_for_status()
            data = r.json()
            searches += 1
            versions.add(data["config_version"])
            ranked = [h["doc_id"] for h in data["results"]]
            for a in user.act(qid, ranked, qrels.get(qid, {})):
                body = {"query_id": data["query_id"], "action_name": a.action_name, "client_id": user.user}
                if a.doc_id is not None:
                    body.update(object_id=a.doc_id, position=a.rank)
                fr = post(url + "/v1/feedback", body, key=key)
                fr.raise_for_status()
                acked.append(fr.json()["event_id"])
    return {"searches": searches, "events": acked, "config_versions": versions}
