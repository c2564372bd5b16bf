"""``POST /v1/answer {query, k?, stream?, client_id?}``: the champion's passages, answered by the team's LLM,
cited and checked (:mod:`evolve.serve._answers`).

JSON by default; server-sent events with ``stream: true`` or ``Accept: text/event-stream``, in this order:

* ``event: retrieval`` ``{"query_id", "config_version", "passages": [{marker, doc_id, title, url, passage}],
  "took_ms"}``: the sources, before the LLM has written a word;
* ``event: token`` ``{"text": "<piece>"}``, many;
* ``event: done``: exactly the JSON response body, or instead ``event: error`` ``{"error": "<one line>",
  "status": <the HTTP status it would have had>}``.
"""

from __future__ import annotations

import asyncio
import json

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from evolve.serve._checks import check_k, query_text

__all__ = ["respond", "router", "sse_event", "unless_disconnected"]


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(description="The question, as typed.")
    k: int | None = Field(None, description="At most this many passages (1 to --max-k; default and cap: "
                                            "answer.max_passages).")
    stream: bool = Field(False, description="Server-sent events: retrieval, token..., done (or error).")
    client_id: str | None = Field(None, max_length=100, description="Who asks; UBI client_id.")


def sse_event(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def unless_disconnected(request, coro, poll: float = 0.25):
    """Run ``coro`` until it is done or the client goes away (then it is cancelled: an LLM request in it closes
    its connection). Returns ``(done, result)``; an exception of ``coro`` is raised."""
    task = asyncio.ensure_future(coro)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll)
            if done:
                return True, task.result()
            if await request.is_disconnected():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                return False, None
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def respond(request, run, *, events=None, body=None, error_body=None):
    """The response to an answer ``run`` that :func:`~evolve.serve._answers.begin_answer` started: ``events`` (an
    async iterator of server-sent events, which closes the run itself) streamed; or the answer collected, then
    ``body(run)`` (200), ``error_body(run)`` (502: the LLM failed) or 499 (the client went away: its LLM request
    was closed). Whatever happens, nothing leaves the run open: its ``--max-answers`` slot is given back."""
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.background import BackgroundTask

    from evolve.llm import LLMError

    handed_over = False
    try:
        if events is not None:
            response = StreamingResponse(events, media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                                         background=BackgroundTask(run.close))
            handed_over = True
            return response

        async def collect():
            async for _ in run.pieces():
                pass

        try:
            done, _ = await unless_disconnected(request, collect())
        except LLMError:
            await run.complete()
            return JSONResponse(error_body(run), status_code=502)
        if not done:  # the client went away: its LLM request was closed; nobody reads this
            return Response(status_code=499)
        await run.complete()
        return JSONResponse(body(run))
    finally:
        if not handed_over:
            await run.close()


def router(svc):
    from fastapi import APIRouter

    from evolve.llm import LLMError
    from evolve.serve._answers import begin_answer

    api = APIRouter()
    opts = svc.options

    async def events(run):
        try:
            yield sse_event("retrieval", run.retrieval_event())
            try:
                async for piece in run.pieces():
                    yield sse_event("token", {"text": piece})
            except LLMError as err:
                yield sse_event("error", {"error": run.error or str(err), "status": 502})
                return
            except Exception as err:  # noqa: BLE001 - one line to the client, the server keeps serving
                run.error = f"internal error: {type(err).__name__}: {' '.join(str(err).split())}"
                yield sse_event("error", {"error": run.error, "status": 500})
                return
            await run.complete()
            yield sse_event("done", run.body())
        finally:
            await run.close()

    @api.post("/v1/answer", responses={429: {"description": "--max-answers answers in flight already"},
                                       502: {"description": "the LLM failed; the retrieval part is included"},
                                       503: {"description": "no LLM configured"}})
    async def answer(req: AnswerRequest, request: Request):
        text = query_text(req.query, opts)
        if req.k is not None:
            check_k(req.k, opts)
        streamed = req.stream or "text/event-stream" in request.headers.get("accept", "")
        run = await begin_answer(svc, text, req.k, req.client_id)
        return await respond(request, run, events=events(run) if streamed else None, body=lambda r: r.body(),
                             error_body=lambda r: r.error_body())

    return api
