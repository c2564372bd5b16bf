"""``POST /v1/retrieve``: AutoRAG's retrieval API, extended (config_version, titles, snippets, interleaving)."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from evolve.feedback import query_record
from evolve.serve._checks import check_k, query_text
from evolve.serve._interleave import CHAMPION, team_draft

__all__ = ["router", "snippet"]


class RetrieveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(description="The query text, as typed.")
    k: int = Field(10, description="How many documents (1 to the server's --max-k, default 100).")
    client_id: str | None = Field(None, max_length=100, description="Who asks (a browser, a bot); UBI client_id.")


class Hit(BaseModel):
    rank: int
    doc_id: str
    score: float
    title: str
    snippet: str


class RetrieveResponse(BaseModel):
    query_id: str
    config_version: str
    took_ms: float
    results: list[Hit]


def snippet(text: str, n: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1].rstrip() + "…"


def router(svc):
    from fastapi import APIRouter

    api = APIRouter()
    live, store, engine, opts = svc.live, svc.store, svc.engine, svc.options

    @api.post("/v1/retrieve", response_model=RetrieveResponse)
    def retrieve(req: RetrieveRequest):
        t0 = time.perf_counter()
        text = query_text(req.query, opts)
        check_k(req.k, opts)
        query_id = opts.new_query_id()
        client_id = req.client_id or "anonymous"
        with live.using() as st:
            fut_a = engine.submit(st.champion, text)
            fut_b = engine.submit(st.challenger, text) if st.challenger is not None else None
            ranked_a = fut_a.result(timeout=opts.search_timeout)
            top_a = sorted(ranked_a.items(), key=lambda kv: (-kv[1], kv[0]))
            attrs = {"config_version": st.champion.config_version, "k": req.k,
                     "config_fingerprint": st.champion.config_fingerprint}
            ranked_b = None
            if fut_b is not None:
                try:
                    ranked_b = fut_b.result(timeout=opts.search_timeout)
                except Exception as err:  # noqa: BLE001 - a broken challenger never fails a search
                    attrs["challenger_error"] = live.challenger_failed(err)
                else:
                    live.challenger_answered()
            if ranked_b is not None:
                top_b = sorted(ranked_b.items(), key=lambda kv: (-kv[1], kv[0]))
                ids, teams = team_draft([d for d, _ in top_a], [d for d, _ in top_b], req.k, query_id)
                scores = {d: (ranked_a[d] if teams[d] == CHAMPION else ranked_b[d]) for d in ids}
                attrs["interleaving"] = {
                    "method": "team-draft",
                    "champion": {"config_version": st.champion.config_version,
                                 "config_fingerprint": st.champion.config_fingerprint},
                    "challenger": {"config_version": st.challenger.config_version,
                                   "config_fingerprint": st.challenger.config_fingerprint},
                    "teams": [teams[d] for d in ids],
                }
            else:
                ids = [d for d, _ in top_a[: req.k]]
                scores = {d: ranked_a[d] for d in ids}
            corpus = st.dataset.corpus
            results = [{"rank": i, "doc_id": d, "score": round(float(scores[d]), 6), "title": corpus[d].title,
                        "snippet": snippet(corpus[d].text, opts.snippet_chars)} for i, d in enumerate(ids, 1)]
            version_now = st.champion.config_version
        if not opts.keep_query_text:
            attrs["query_text"] = "dropped"
        store.add_query(query_record(query_id=query_id, client_id=client_id,
                                     user_query=text if opts.keep_query_text else "", hit_ids=ids, attributes=attrs))
        took = round(1000.0 * (time.perf_counter() - t0), 3)
        return {"query_id": query_id, "config_version": version_now, "took_ms": took, "results": results}

    return api
