"""An OpenAI-compatible facade, so Open WebUI (or any OpenAI client) can ask the company's knowledge:

* ``GET /v1/models`` lists one model, ``evolve``;
* ``POST /v1/chat/completions`` with ``model: "evolve"`` answers the LAST user message (earlier turns are not
  used: each question is retrieved on its own) through the same path as ``/v1/answer``, streamed
  (``chat.completion.chunk`` events, ``data: [DONE]``) or not. The sources the answer cites follow it as a
  Markdown list, and the response (the last chunk, when streamed) carries ``citations`` (``[{marker, doc_id,
  title, url, passage}]``) and ``evolve`` (query_id, config_version, the checked answer and its flags).

Streamed text is the model's as it comes; a marker that points to no passage is removed only from the checked
answer in ``evolve.answer``. Sampling fields a client sends (``temperature``, ``max_tokens``...) are ignored:
the ``answer:`` section decides them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from evolve.serve._checks import query_text, unprocessable

__all__ = ["router", "sources_markdown", "MODEL_ID"]

MODEL_ID = "evolve"


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send many fields; the answer config decides
    model: str
    messages: list[dict[str, Any]] = Field(description="Chat turns; the last one with role 'user' is answered.")
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = Field(None, max_length=100, description="Who asks; UBI client_id.")


def _text_of(content: Any) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return _text_of(m.get("content"))
    roles = ", ".join(sorted({str(m.get("role")) for m in messages if isinstance(m, dict)})) or "none"
    raise unprocessable(f"messages: expected at least one message with role 'user', got roles: {roles}")


def sources_markdown(citations: list[dict]) -> str:
    """``\\n\\nSources:\\n- [1] [Title](url)`` for the cited passages ("" when none is cited)."""
    if not citations:
        return ""
    lines = []
    for c in citations:
        title = " ".join(str(c.get("title") or c["doc_id"]).split()).replace("[", "(").replace("]", ")")
        lines.append(f"- [{c['marker']}] [{title}]({c['url']})" if c.get("url") else f"- [{c['marker']}] {title}")
    return "\n\nSources:\n" + "\n".join(lines)


def _usage(result) -> dict:
    p = result.usage.get("prompt_tokens") or 0
    c = result.usage.get("completion_tokens") or 0
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _evolve_part(run) -> dict:
    body = run.body()
    return {k: body[k] for k in ("query_id", "config_version", "answer", "refused", "refusal", "grounded",
                                 "unsupported_sentences", "removed_markers", "language", "took_ms", "ttft_ms",
                                 "passages")}


def _completion(run) -> dict:
    """The non-streamed chat completion of a finished answer: its text and the sources it cites."""
    result = run.result
    citations = result.body()["citations"]
    return {"id": f"chatcmpl-{run.query_id}", "object": "chat.completion", "created": int(time.time()),
            "model": MODEL_ID,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": result.answer + sources_markdown(citations)}}],
            "usage": _usage(result), "citations": citations, "evolve": _evolve_part(run)}


def router(svc):
    from fastapi import APIRouter, HTTPException

    from evolve.llm import LLMError
    from evolve.serve._answers import begin_answer
    from evolve.serve._routes_answer import respond

    api = APIRouter()
    opts = svc.options
    created = int(time.time())

    @api.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": created,
                                            "owned_by": "evolve"}]}

    def chunk(run, delta: dict, finish: str | None = None, **extra) -> bytes:
        body = {"id": f"chatcmpl-{run.query_id}", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": MODEL_ID, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()

    async def stream_chunks(run, include_usage: bool):
        try:
            yield chunk(run, {"role": "assistant", "content": ""})
            try:
                async for piece in run.pieces():
                    yield chunk(run, {"content": piece})
            except LLMError as err:
                error = {"message": run.error or str(err), "type": "llm_error", "code": 502}
                yield f"data: {json.dumps({'error': error}, ensure_ascii=False)}\n\n".encode()
                return
            await run.complete()
            result = run.result
            tail = sources_markdown(result.body()["citations"])
            if tail:
                yield chunk(run, {"content": tail})
            yield chunk(run, {}, "stop", citations=result.body()["citations"], evolve=_evolve_part(run))
            if include_usage:
                body = {"id": f"chatcmpl-{run.query_id}", "object": "chat.completion.chunk",
                        "created": int(time.time()), "model": MODEL_ID, "choices": [], "usage": _usage(result)}
                yield f"data: {json.dumps(body)}\n\n".encode()
            yield b"data: [DONE]\n\n"
        finally:
            await run.close()

    @api.post("/v1/chat/completions")
    async def chat(req: ChatRequest, request: Request):
        if req.model != MODEL_ID:
            raise HTTPException(status_code=404, detail=f"model: expected '{MODEL_ID}' (GET /v1/models), got "
                                                        f"'{req.model[:100]}'")
        text = query_text(last_user_text(req.messages), opts, field="messages: the last user message")
        include_usage = bool((req.stream_options or {}).get("include_usage"))
        run = await begin_answer(svc, text, None, req.user)
        return await respond(request, run, events=stream_chunks(run, include_usage) if req.stream else None,
                             body=_completion, error_body=lambda r: {"error": r.error})

    return api
