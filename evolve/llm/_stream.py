"""Streamed chat completions: ``stream: true`` and the server-sent events vLLM and Ollama send back.

The reply arrives as ``data: {json}`` lines (blank lines between events, ``:`` comment lines as keep-alives)
ending with ``data: [DONE]``. Each JSON chunk holds ``choices[0].delta.content`` (a piece of text) and, on the
last one, ``finish_reason``; with ``stream_options: {include_usage: true}`` a final chunk with empty ``choices``
carries ``usage``. A chunk ``{"error": ...}`` is the server giving up mid-answer.

:class:`ChatStream` (threads) and :class:`AsyncChatStream` (an event loop: ``evolve serve``) share the parsing
(:class:`SSEReader`) and the error lines. Both:

* retry before the first byte only (connection refused, HTTP 5xx): once text has arrived, a repeat would write a
  different answer, so a stream that breaks off is an error (:class:`LLMError`, ``kind="broken"``);
* measure the time to the first token (``ttft``) from the moment the request is sent;
* close the upstream HTTP connection when cancelled (:meth:`ChatStream.cancel`, :meth:`AsyncChatStream.aclose`):
  the LLM server sees the client go and stops generating;
* raise :class:`LLMError` with one line that names the endpoint (never the API key) and a ``kind``:
  ``unreachable``, ``timeout`` (no byte for ``timeout`` seconds), ``broken`` (ended without ``[DONE]``),
  ``refused`` (an HTTP 4xx: a prompt too long, an unknown model), ``cancelled``.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from evolve._http import RETRY_STATUSES, _error_detail, _one_line, _transport_reason
from evolve.errors import BackendError

if TYPE_CHECKING:
    from evolve.llm._client import ChatClient

__all__ = ["AsyncChatStream", "ChatStream", "LLMError", "SSEReader", "StreamResult"]


class LLMError(BackendError):
    """The LLM failed to answer. ``kind``: unreachable, timeout, broken, refused or cancelled."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class StreamResult:
    """What a finished (or failed) stream said: the whole text, why it stopped, the server's token counts, and
    seconds: ``ttft`` from sending the request to the first non-empty piece of text (None: none came)."""

    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    ttft: float | None = None
    seconds: float = 0.0
    pieces: int = 0
    done: bool = False
    attempts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"finish_reason": self.finish_reason, "usage": dict(self.usage),
                "ttft": None if self.ttft is None else round(self.ttft, 4), "seconds": round(self.seconds, 4),
                "pieces": self.pieces, "attempts": self.attempts}


class SSEReader:
    """Feeds on the lines of a chat-completions event stream; :meth:`feed` returns the text a line adds."""

    def __init__(self, result: StreamResult, where: str):
        self.result = result
        self.where = where
        self._data: list[str] = []

    def feed(self, line: str) -> str:
        """One line of the stream (without its newline). Returns the new text ("" for none)."""
        line = line.rstrip("\r")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return ""  # a comment: keep-alive
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
            # vLLM and Ollama put one JSON object per data line: read it now rather than wait for the blank line;
            # data that is no JSON yet may go on in the next data line (the event ends at the blank line)
            return self._dispatch(partial=True)
        return ""  # event:, id:, retry: carry nothing a chat stream needs

    def close(self) -> str:
        return self._dispatch()

    def _dispatch(self, partial: bool = False) -> str:
        if not self._data:
            return ""
        data = "\n".join(self._data)
        if data.strip() == "[DONE]":
            self._data = []
            self.result.done = True
            return ""
        try:
            chunk = json.loads(data)
        except ValueError:
            if partial:
                return ""
            self._data = []
            raise LLMError(f"{self.where} sent a stream event that is not JSON: {_one_line(data, 120)!r}",
                           "broken") from None
        self._data = []
        if not isinstance(chunk, dict):
            return ""
        if chunk.get("error") is not None:
            err = chunk["error"]
            msg = err.get("message", err) if isinstance(err, dict) else err
            raise LLMError(f"{self.where} gave up mid-answer: {_one_line(str(msg), 200)}", "broken")
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.result.usage = {k: v for k, v in usage.items() if isinstance(v, int | float)}
        text = ""
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            piece = delta.get("content") if isinstance(delta, dict) else None
            if piece is None:
                piece = choice.get("text")  # a completions-style chunk
            if isinstance(piece, str) and piece:
                text += piece
            if choice.get("finish_reason"):
                self.result.finish_reason = str(choice["finish_reason"])
        if text:
            self.result.text += text
            self.result.pieces += 1
        return text


def _retry_delay(attempt: int) -> float:
    cap = min(4.0, 0.25 * (2 ** attempt))
    return cap / 2 + random.uniform(0, cap / 2)


class _StreamBase:
    def __init__(self, client: ChatClient, payload: dict[str, Any]):
        self.client = client
        self.payload = payload
        self.result = StreamResult()
        self.where = f"LLM endpoint {client.display_url}"
        self._cancelled = False

    def _timeout(self) -> httpx.Timeout:
        t = self.client.timeout
        return httpx.Timeout(t, connect=min(t, 10.0))

    def _fail(self, message: str, kind: str) -> LLMError:
        return LLMError(self.client.http.scrub(_one_line(message, 400)), kind)

    def _transport(self, exc: BaseException, *, started: bool) -> LLMError:
        if self._cancelled:
            return self._fail(f"{self.where}: the request was cancelled", "cancelled")
        reason = _transport_reason(exc, self.client.timeout)
        if isinstance(exc, httpx.TimeoutException):
            what = "the next token" if started else "an answer"
            return self._fail(f"{self.where} timed out after {self.client.timeout:g}s waiting for {what}", "timeout")
        if started:
            return self._fail(f"{self.where}: the answer broke off after {self.result.pieces} pieces of text "
                              f"({reason})", "broken")
        return self._fail(f"{self.where} is unreachable: {reason}", "unreachable")

    def _status_error(self, status: int, detail: str) -> tuple[LLMError, bool]:
        """The error for an HTTP error status, and whether it is worth another attempt."""
        retry = status in RETRY_STATUSES
        kind = "unreachable" if retry else "refused"
        return self._fail(f"{self.where} answered POST /chat/completions with HTTP {status}"
                          f"{': ' + detail if detail else ''}", kind), retry

    def _request(self, http):
        """The POST of this stream (on a sync or an async httpx client)."""
        return http.build_request("POST", self.client.http.url("chat/completions"), json=self.payload,
                                  headers=self.client.http.request_headers(stream=True), timeout=self._timeout())

    def _refused(self, status: int, detail: str) -> tuple[LLMError, bool] | None:
        """After an HTTP error status: None when the request is to go again at once without ``stream_options``
        (a server that does not take the field: remembered), else the error and whether to try again."""
        if status in (400, 422) and "stream_options" in detail and "stream_options" in self.payload:
            self.client._stream_usage = False
            self.payload = {k: v for k, v in self.payload.items() if k != "stream_options"}
            return None
        return self._status_error(status, detail)

    def _gives_up(self, err: LLMError, retry: bool, attempt: int) -> bool:
        return not retry or attempt >= self.client.stream_retries or err.kind == "timeout"

    def _piece(self, reader: SSEReader, line: str, t0: float) -> str:
        """The text one line of the stream adds (the first one sets ``ttft``)."""
        piece = reader.feed(line)
        if piece and self.result.ttft is None:
            self.result.ttft = time.perf_counter() - t0
        return piece

    def _finish(self, reader: SSEReader, t0: float) -> None:
        reader.close()
        self.result.seconds = time.perf_counter() - t0
        if not self.result.done and self.result.finish_reason is None:
            raise self._fail(f"{self.where}: the answer broke off after {self.result.pieces} pieces of text "
                             "(the stream ended without [DONE])", "broken")


class ChatStream(_StreamBase):
    """A streamed reply, read in the calling thread: iterate for the text pieces, then read :attr:`result`.
    :meth:`cancel` (from any thread) closes the connection; the iteration then raises ``kind="cancelled"``."""

    def __init__(self, client: ChatClient, payload: dict[str, Any]):
        super().__init__(client, payload)
        self._resp: httpx.Response | None = None
        self._lock = threading.Lock()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            resp = self._resp
        if resp is not None:
            resp.close()

    def _open(self, http: httpx.Client, t0: float) -> httpx.Response:
        attempt = 0
        while True:
            if self._cancelled:
                raise self._fail(f"{self.where}: the request was cancelled", "cancelled")
            self.result.attempts += 1
            try:
                resp = http.send(self._request(http), stream=True)
            except httpx.TransportError as exc:
                err, retry = self._transport(exc, started=False), True
            else:
                if resp.status_code < 400:
                    return resp
                resp.read()
                resp.close()
                if (refused := self._refused(resp.status_code, _error_detail(resp))) is None:
                    continue
                err, retry = refused
            if self._gives_up(err, retry, attempt):
                raise err
            time.sleep(_retry_delay(attempt))
            attempt += 1

    def __iter__(self) -> Iterator[str]:
        t0 = time.perf_counter()
        reader = SSEReader(self.result, self.where)
        http = self.client.http._http()
        resp = self._open(http, t0)
        with self._lock:
            self._resp = resp
            cancelled = self._cancelled
        if cancelled:
            resp.close()
            raise self._fail(f"{self.where}: the request was cancelled", "cancelled")
        try:
            for line in resp.iter_lines():
                if piece := self._piece(reader, line, t0):
                    yield piece
                if self.result.done:
                    break
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise self._transport(exc, started=True) from None
        finally:
            resp.close()
        if self._cancelled:
            raise self._fail(f"{self.where}: the request was cancelled", "cancelled")
        self._finish(reader, t0)


class AsyncChatStream(_StreamBase):
    """A streamed reply read on an event loop (``async for piece in stream``). :meth:`aclose` (or the task being
    cancelled) closes the upstream connection."""

    def __init__(self, client: ChatClient, payload: dict[str, Any]):
        super().__init__(client, payload)
        self._gen: AsyncIterator[str] | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        if self._gen is None:
            self._gen = self._run()
        return self._gen

    async def aclose(self) -> None:
        self._cancelled = self._cancelled or not (self.result.done or self.result.finish_reason)
        if self._gen is not None:
            await self._gen.aclose()

    async def _open(self, http: httpx.AsyncClient):
        import asyncio

        attempt = 0
        while True:
            self.result.attempts += 1
            try:
                resp = await http.send(self._request(http), stream=True)
            except httpx.TransportError as exc:
                err, retry = self._transport(exc, started=False), True
            else:
                if resp.status_code < 400:
                    return resp
                await resp.aread()
                await resp.aclose()
                if (refused := self._refused(resp.status_code, _error_detail(resp))) is None:
                    continue
                err, retry = refused
            if self._gives_up(err, retry, attempt):
                raise err
            await asyncio.sleep(_retry_delay(attempt))
            attempt += 1

    async def _run(self) -> AsyncIterator[str]:
        t0 = time.perf_counter()
        reader = SSEReader(self.result, self.where)
        resp = await self._open(self.client._async_http())
        try:
            async for line in resp.aiter_lines():
                if piece := self._piece(reader, line, t0):
                    yield piece
                if self.result.done:
                    break
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise self._transport(exc, started=True) from None
        finally:
            import anyio

            with anyio.CancelScope(shield=True):  # a cancelled task (the client left) must still close upstream
                await resp.aclose()  # not read to the end: the connection is closed, not pooled
        self._finish(reader, t0)
