"""The HTTP API of ``evolve serve`` (routes only): AutoRAG's ``/v1/retrieve``, extended, UBI feedback, documents,
version and health, and the page at ``/``."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from evolve.feedback import ACTIONS, OBJECT_ACTIONS, event_record, query_record
from evolve.serve._interleave import CHAMPION, team_draft
from evolve.serve._middleware import BearerKey, BodyLimit, install_error_handlers

__all__ = ["ServeOptions", "create_app", "STATIC_DIR"]

log = logging.getLogger("evolve.serve")

STATIC_DIR = Path(__file__).with_name("static")
_EVENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


@dataclass
class ServeOptions:
    max_k: int = 100
    max_query_chars: int = 1000
    max_body_bytes: int = 64 * 1024
    keep_query_text: bool = True
    api_key: str | None = None
    snippet_chars: int = 240
    search_timeout: float = 120.0
    #: makes query ids (default: random UUIDs); the interleaving coin is seeded by the query id, so a seeded
    #: factory replays a whole interleaving experiment exactly (tests, benchmarks)
    query_ids: Callable[[], str] | None = None


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


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query_id: str = Field(max_length=100)
    action_name: str = Field(description=f"One of {', '.join(ACTIONS)}.")
    object_id: str | None = Field(None, max_length=256, description="The document (not for no_answer).")
    position: int | None = Field(None, description="1-based rank of object_id in the list shown (checked).")
    client_id: str | None = Field(None, max_length=100)
    event_id: str | None = Field(None, description="Optional idempotency key: a retried request is stored once.")


class FeedbackResponse(BaseModel):
    event_id: str
    duplicate: bool = False


def _snippet(text: str, n: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1].rstrip() + "…"


def create_app(live, store, engine, options: ServeOptions | None = None):
    """The ASGI app. ``live`` is the :class:`~evolve.serve.LiveChampion`, ``store`` a
    :class:`~evolve.feedback.FeedbackStore`, ``engine`` the :class:`~evolve.serve.SearchEngine`."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    opts = options or ServeOptions()

    app = FastAPI(title="evolve serve", version="1", docs_url=None, redoc_url=None,
                  description="The champion retrieval pipeline, and the feedback people give on its answers (UBI 1.3.0).")
    install_error_handlers(app)

    def unprocessable(message: str):
        return HTTPException(status_code=422, detail=message)

    @app.get("/healthz")
    def healthz():
        return live.health()

    @app.get("/v1/version")
    def version():
        st = live.state
        ch = st.champion
        return {
            "config_version": ch.config_version,
            "config_fingerprint": ch.config_fingerprint,
            "promoted_at": ch.promoted_at,
            "champion_source": ch.source,
            "corpus_fingerprint": st.corpus_fingerprint,
            "dataset": st.dataset.name,
            "n_documents": len(st.dataset.corpus),
            "challenger": st.challenger.describe() if st.challenger else None,
            "challenger_failures": live.challenger_failures,
            "swaps": live.swaps,
        }

    @app.post("/v1/retrieve", response_model=RetrieveResponse)
    def retrieve(req: RetrieveRequest):
        t0 = time.perf_counter()
        text = req.query.strip()
        if not text:
            raise unprocessable("query: expected a non-empty text, got an empty one")
        if len(text) > opts.max_query_chars:
            raise unprocessable(f"query: expected at most {opts.max_query_chars} characters, got {len(text)}")
        if not 1 <= req.k <= opts.max_k:
            raise unprocessable(f"k: expected 1 to {opts.max_k}, got {req.k}")
        query_id = opts.query_ids() if opts.query_ids else uuid.uuid4().hex
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
                        "snippet": _snippet(corpus[d].text, opts.snippet_chars)} for i, d in enumerate(ids, 1)]
            version_now = st.champion.config_version
        if not opts.keep_query_text:
            attrs["query_text"] = "dropped"
        store.add_query(query_record(query_id=query_id, client_id=client_id,
                                     user_query=text if opts.keep_query_text else "", hit_ids=ids, attributes=attrs))
        took = round(1000.0 * (time.perf_counter() - t0), 3)
        return {"query_id": query_id, "config_version": version_now, "took_ms": took, "results": results}

    @app.post("/v1/feedback", status_code=201, response_model=FeedbackResponse)
    def feedback(req: FeedbackRequest):
        if req.action_name not in ACTIONS:
            raise unprocessable(f"action_name: expected one of {', '.join(ACTIONS)}, got '{req.action_name}'")
        if req.event_id is not None and not _EVENT_ID.fullmatch(req.event_id):
            raise unprocessable(f"event_id: expected 1 to 100 of A-Z a-z 0-9 _ . : -, got '{req.event_id[:100]}'")
        q = store.get_query(req.query_id)
        if q is None:
            raise unprocessable(f"query_id: expected one returned by POST /v1/retrieve, got unknown '{req.query_id}'")
        hits = q.get("query_response_hit_ids") or []
        attrs = q.get("query_attributes") or {}
        extra: dict = {}
        if req.action_name in OBJECT_ACTIONS:
            if not req.object_id:
                raise unprocessable(f"object_id: expected the document for action '{req.action_name}', got none")
            if req.object_id not in hits:
                raise unprocessable(f"object_id: expected one of the {len(hits)} documents returned for query "
                                    f"'{req.query_id}', got '{req.object_id}'")
            ordinal = hits.index(req.object_id) + 1
            if req.position is not None and req.position != ordinal:
                raise unprocessable(f"position: expected {ordinal} (the rank of '{req.object_id}'), got {req.position}")
            inter = attrs.get("interleaving")
            if inter:
                extra["interleaving_team"] = inter["teams"][ordinal - 1]
        else:
            if req.object_id is not None:
                raise unprocessable(f"object_id: expected none for '{req.action_name}' (it is about the whole list), "
                                    f"got '{req.object_id}'")
            ordinal = 0
        event_id = req.event_id or uuid.uuid4().hex
        record = event_record(event_id=event_id, action_name=req.action_name, query_id=req.query_id,
                              client_id=req.client_id or q["client_id"], object_id=req.object_id, ordinal=ordinal,
                              config_version=attrs.get("config_version", ""), extra=extra)
        stored = store.add_event(record)
        return {"event_id": event_id, "duplicate": not stored}

    @app.get("/v1/documents/{doc_id:path}")
    def document(doc_id: str):
        corpus = live.state.dataset.corpus
        doc = corpus.get(doc_id)
        if doc is None:
            raise HTTPException(status_code=404, detail=f"doc_id: expected a document of the served corpus, got unknown '{doc_id[:200]}'")
        return {"doc_id": doc.id, "title": doc.title, "text": doc.text}

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(TimeoutError)
    async def _timeout(request, exc):
        return JSONResponse({"error": f"the search took longer than {opts.search_timeout:.0f} s"}, status_code=503)

    app.state.api_key = opts.api_key
    wrapped = BodyLimit(app, opts.max_body_bytes)
    if opts.api_key:
        wrapped = BearerKey(wrapped, opts.api_key)
    wrapped.app_ = app  # the FastAPI app (openapi(), tests)
    return wrapped
