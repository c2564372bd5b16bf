"""The HTTP API of ``evolve serve``, assembled from one router per named piece:

* :mod:`._routes_search` — ``POST /v1/retrieve`` (AutoRAG's, extended);
* :mod:`._routes_answer` — ``POST /v1/answer`` (JSON or server-sent events);
* :mod:`._routes_openai` — ``GET /v1/models``, ``POST /v1/chat/completions`` (the OpenAI-compatible facade);
* :mod:`._routes_feedback` — ``POST /v1/feedback`` (UBI events);
* :mod:`._routes_pages` — ``GET /v1/documents/{doc_id}``, the page at ``/``;
* :mod:`._routes_health` — ``GET /healthz``, ``GET /v1/version``;

behind the body-size limit and the bearer key (:mod:`._middleware`), every refusal one line of JSON.
"""

from __future__ import annotations

import logging

from evolve.serve._middleware import BearerKey, BodyLimit, install_error_handlers
from evolve.serve._options import ServeOptions, Services
from evolve.serve._routes_pages import STATIC_DIR

__all__ = ["ServeOptions", "Services", "create_app", "STATIC_DIR"]

log = logging.getLogger("evolve.serve")


def create_app(live, store, engine, options: ServeOptions | None = None, *, answers=None):
    """The ASGI app. ``live`` is the :class:`~evolve.serve.LiveChampion`, ``store`` a
    :class:`~evolve.feedback.FeedbackStore`, ``engine`` the :class:`~evolve.serve.SearchEngine`; ``answers`` the
    :class:`~evolve.serve.AnswerService` (default: one bounded by ``options.max_answers``)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from fastapi.staticfiles import StaticFiles

    from evolve.serve import (
        _routes_answer,
        _routes_feedback,
        _routes_health,
        _routes_openai,
        _routes_pages,
        _routes_search,
    )
    from evolve.serve._answers import AnswerService

    opts = options or ServeOptions()
    svc = Services(live, store, engine, opts, answers or AnswerService(opts.max_answers))

    app = FastAPI(title="evolve serve", version="1", docs_url=None, redoc_url=None,
                  description="The champion retrieval pipeline, answers from the team's LLM grounded in its passages, "
                              "and the feedback people give (UBI 1.3.0).")
    install_error_handlers(app)
    for module in (_routes_health, _routes_search, _routes_answer, _routes_openai, _routes_feedback, _routes_pages):
        app.include_router(module.router(svc))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if opts.doctor is not None:
        from evolve.serve._doctor import doctor_router

        app.include_router(doctor_router(opts.doctor))

    @app.exception_handler(TimeoutError)
    async def _timeout(request, exc):
        return JSONResponse({"error": f"the search took longer than {opts.search_timeout:.0f} s"}, status_code=503)

    app.state.api_key = opts.api_key
    app.state.services = svc
    wrapped = BodyLimit(app, opts.max_body_bytes, {"/v1/chat/completions": opts.max_chat_body_bytes})
    if opts.api_key:
        wrapped = BearerKey(wrapped, opts.api_key)
    wrapped.app_ = app  # the FastAPI app (openapi(), tests)
    wrapped.services = svc
    return wrapped
