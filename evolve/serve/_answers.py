"""Answers in ``evolve serve``: one :class:`AnswerRun` per question, and the :class:`AnswerService` every run shares
(the answerers per ``answer:`` config, the ``--max-answers`` bound, the feature's health).

How one answer runs, and where (searches never wait behind an LLM):

1. the passages: :meth:`SearchEngine.submit_passages` on the engine's one search thread (the chunk-level step);
2. packing (token counts may ask the LLM server's ``/tokenize``): a worker thread;
3. the UBI query record (``query_response_hit_ids`` = the packed passages' documents,
   ``query_attributes.answer = {"pending": true}``): a worker thread, before anything is sent, so a citation
   click during the answer finds its query;
4. the LLM, streamed: the event loop (:meth:`evolve.llm.ChatClient.astream`). A client that goes away cancels
   the run, which closes the upstream connection (the LLM server stops generating); checking the answer: a worker
   thread;
5. ``query_attributes.answer`` set to what the answer cited (``{cited, refused, grounded, refusal,
   removed_markers, unsupported}``), or ``{error}`` / ``{cancelled: true}``.

Faults: an LLM that is unreachable, times out or dies mid-answer fails the answer only (502, the retrieval part
included; in a stream an ``error`` event); ``/healthz`` then says the answer feature is degraded, with the error in
one line, until an answer or a probe succeeds again. Search is not touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from typing import Any

from evolve.feedback import query_record

__all__ = ["AnswerRun", "AnswerService", "begin_answer", "NO_LLM"]

log = logging.getLogger("evolve.serve")

NO_LLM = ("answer: no LLM is configured: expected answer.base_url and answer.model (evolve serve --set "
          "answer.base_url=URL --set answer.model=NAME, or the champion's answer section), got none")


def _one_line(err: BaseException | str) -> str:
    return " ".join(str(err).split())


class AnswerService:
    """The answerers (one per ``answer:`` config: a promotion or an edit of the section makes a new one), the
    bound on answers in flight, and the answer feature's health."""

    PROBE_EVERY = 15.0  # seconds between health probes of a degraded LLM

    def __init__(self, max_answers: int = 4):
        self.max_answers = int(max_answers)
        self._lock = threading.Lock()
        self._active = 0
        self._answerers: dict[str, Any] = {}
        self._durations: deque[float] = deque(maxlen=20)
        self.answers = 0
        self.failures = 0
        self.rejected = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._probe_at = 0.0
        self._probing = False

    # ------------------------------------------------------------------ answerers
    def answerer(self, config):
        """The :class:`~evolve.answer.Answerer` for an ``answer:`` config (made once per distinct config)."""
        from evolve.answer import Answerer

        key = config.model_dump_json()
        with self._lock:
            got = self._answerers.get(key)
            if got is None:
                while len(self._answerers) >= 4:  # old configs (promoted away) go; an answer in flight keeps its own
                    self._answerers.pop(next(iter(self._answerers)))
                got = self._answerers[key] = Answerer(config)
        return got

    # ------------------------------------------------------------------ the bound
    def acquire(self) -> bool:
        with self._lock:
            if self._active >= self.max_answers:
                self.rejected += 1
                return False
            self._active += 1
            return True

    def release(self, seconds: float | None) -> None:
        with self._lock:
            self._active -= 1
            if seconds is not None:
                self._durations.append(seconds)

    @property
    def active(self) -> int:
        return self._active

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the median time of the recent answers (5 before any), 1..120."""
        with self._lock:
            d = sorted(self._durations)
        median = d[len(d) // 2] if d else 5.0
        return max(1, min(120, math.ceil(median)))

    # ------------------------------------------------------------------ health
    def succeeded(self) -> None:
        with self._lock:
            self.answers += 1
            self.last_error = None

    def failed(self, message: str) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = _one_line(message)
            self.last_error_at = time.time()
        log.error("evolve serve: an answer failed: %s", self.last_error)

    def health(self, config) -> dict:
        """``{"status": "off"}`` without an LLM; ``ok``; or ``degraded`` with the last LLM error in one line (a
        probe in the background then checks every PROBE_EVERY seconds whether the LLM is back)."""
        if not config.configured:
            return {"status": "off", "reason": "no answer.base_url / answer.model configured"}
        with self._lock:
            out: dict[str, Any] = {"status": "degraded" if self.last_error else "ok", "model": config.model,
                                   "active": self._active, "max_answers": self.max_answers,
                                   "answers": self.answers, "failures": self.failures}
            if self.last_error:
                out["error"] = self.last_error
                out["since"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_error_at))
            due = self.last_error is not None and not self._probing and time.monotonic() - self._probe_at > self.PROBE_EVERY
            if due:
                self._probing, self._probe_at = True, time.monotonic()
        if due:
            threading.Thread(target=self.probe, args=(config,), name="evolve-answer-probe", daemon=True).start()
        return out

    def probe(self, config) -> bool:
        """Ask the LLM server whether it serves the model (``GET /models``); record the outcome."""
        from evolve.errors import EvolveError

        try:
            client = self.answerer(config).client
            client._info = None  # ask again, not from memory
            client.info()
        except EvolveError as err:
            with self._lock:
                self._probing = False
                was_ok, self.last_error = self.last_error is None, _one_line(err)
                self.last_error_at = self.last_error_at or time.time()
            if was_ok:
                log.error("evolve serve: the LLM does not answer (%s): answers are degraded, search goes on",
                          self.last_error)
            return False
        except Exception as err:  # noqa: BLE001 - a probe never takes the server down
            with self._lock:
                self._probing = False
                self.last_error = _one_line(f"{type(err).__name__}: {err}")
            return False
        with self._lock:
            self._probing = False
            self.last_error = None
        return True

    def close(self) -> None:
        with self._lock:
            answerers, self._answerers = list(self._answerers.values()), {}
        for a in answerers:
            a.close()


class AnswerRun:
    """One answer in flight: retrieval and packing done (:func:`begin_answer`), the LLM part to stream
    (:meth:`pieces`), the UBI record to complete (:meth:`complete`), the slot and the state to give back
    (:meth:`close`, idempotent)."""

    def __init__(self, svc, state_cm, state, answerer, *, query_id: str, text: str, t0: float):
        self.svc = svc
        self._state_cm = state_cm
        self.state = state
        self.answerer = answerer
        self.query_id = query_id
        self.text = text
        self.t0 = t0
        self.config_version = state.champion.config_version
        self.prepared = None
        self.retrieval_ms = 0.0
        self.result = None
        self.error: str | None = None
        self._recorded = False
        self._closed = False

    # ------------------------------------------------------------------ the parts a client sees
    def retrieval_event(self) -> dict:
        return {"query_id": self.query_id, "config_version": self.config_version,
                "passages": self.prepared.passages, "took_ms": self.retrieval_ms}

    def took_ms(self) -> float:
        return round(1000.0 * (time.perf_counter() - self.t0), 3)

    def body(self) -> dict:
        """The non-streamed response (and the ``done`` event): the answer, its checked citations and flags."""
        out = {"query_id": self.query_id, "config_version": self.config_version, **self.result.body()}
        out["took_ms"] = self.took_ms()
        out["passages"] = self.prepared.passages
        return out

    def error_body(self) -> dict:
        """A failed answer: the one-line error and the retrieval part (a 502 response)."""
        return {"error": self.error, "query_id": self.query_id, "config_version": self.config_version,
                "passages": self.prepared.passages, "took_ms": self.took_ms()}

    async def pieces(self):
        """The answer's text as it comes (a refusal decided before the LLM: its line, once). Sets
        :attr:`result` at the end; raises :class:`~evolve.llm.LLMError` when the LLM fails (:attr:`error` set,
        the feature marked degraded)."""
        from evolve.llm import LLMError

        prepared, answerer = self.prepared, self.answerer
        if prepared.refusal is not None:
            self.result = answerer.finish(prepared, None)
            yield self.result.answer
            return
        cfg = answerer.config
        stream = answerer.client.astream(prepared.messages, max_tokens=cfg.max_tokens, temperature=cfg.temperature)
        try:
            async for piece in stream:
                yield piece
        except LLMError as err:
            if err.kind != "cancelled":
                self.error = str(err)
                self.svc.answers.failed(self.error)
            raise
        finally:
            await _shielded(stream.aclose())
        # checking splits sentences (kiwipiepy for Korean, loaded on first use): a worker thread, not the event loop
        self.result = await asyncio.to_thread(answerer.finish, prepared, stream.result.text, stream.result)
        self.svc.answers.succeeded()

    # ------------------------------------------------------------------ the record and the slot
    async def complete(self) -> None:
        """Write what the answer cited (or its error) into the query record."""
        if self._recorded:
            return
        self._recorded = True
        if self.result is not None:
            value = self.result.ubi()
        elif self.error is not None:
            value = {"error": self.error}
        else:
            value = {"cancelled": True}
        try:
            await asyncio.to_thread(self.svc.store.set_query_attribute, self.query_id, "answer", value)
        except Exception as err:  # noqa: BLE001 - a store hiccup must not take the answer down; said in the log
            log.error("evolve serve: recording answer %s failed: %s", self.query_id, _one_line(err))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await _shielded(self.complete())
        finally:
            self.svc.answers.release(time.perf_counter() - self.t0 if self.result is not None else None)
            self._state_cm.__exit__(None, None, None)


async def _shielded(awaitable) -> None:
    """Await ``awaitable`` even inside a cancelled scope (a client that went away must still close upstream)."""
    import anyio

    with anyio.CancelScope(shield=True):
        await awaitable


async def begin_answer(svc, text: str, k: int | None, client_id: str | None) -> AnswerRun:
    """Everything before the LLM, in this order: the LLM is configured (else 503), a slot under
    ``--max-answers`` is free (else 429 with Retry-After), the passages, packing, the UBI query record. Raises
    HTTPException (503, 429) or TimeoutError (the search took too long) before anything is sent."""
    from fastapi import HTTPException

    from evolve.errors import EvolveError

    t0 = time.perf_counter()
    opts = svc.options
    cm = svc.live.using()
    state = cm.__enter__()
    acquired = False
    try:
        cfg = state.champion.config.answer
        if not cfg.configured:
            raise HTTPException(status_code=503, detail=NO_LLM)
        if not svc.answers.acquire():
            wait = svc.answers.retry_after()
            raise HTTPException(status_code=429, headers={"Retry-After": str(wait)},
                                detail=f"answer: {svc.answers.max_answers} answers are being written already "
                                       f"(--max-answers {svc.answers.max_answers}); try again in {wait} s; "
                                       "/v1/retrieve still answers")
        acquired = True
        depth = cfg.max_passages if k is None else min(k, cfg.max_passages)
        fut = svc.engine.submit_passages(state.champion, text, depth)
        retrieval = await asyncio.wait_for(asyncio.wrap_future(fut), opts.search_timeout)
        try:
            answerer = svc.answers.answerer(cfg)
            run = AnswerRun(svc, cm, state, answerer, query_id=opts.new_query_id(), text=text, t0=t0)
            run.prepared = await asyncio.to_thread(answerer.prepare, text, retrieval, state.dataset.corpus)
        except EvolveError as err:  # an unset key variable, an unusable answer.tokenizer: the feature, not the server
            svc.answers.failed(str(err))
            raise HTTPException(status_code=503, detail=f"answer: {_one_line(err)}") from None
        run.retrieval_ms = run.took_ms()
        hit_ids = [p["doc_id"] for p in run.prepared.passages]
        attrs = {"config_version": state.champion.config_version, "k": depth, "endpoint": "answer",
                 "config_fingerprint": state.champion.config_fingerprint, "answer": {"pending": True}}
        if not opts.keep_query_text:
            attrs["query_text"] = "dropped"
        record = query_record(query_id=run.query_id, client_id=client_id or "anonymous",
                              user_query=text if opts.keep_query_text else "", hit_ids=hit_ids, attributes=attrs)
        await asyncio.to_thread(svc.store.add_query, record)
        return run
    except BaseException:
        if acquired:
            svc.answers.release(None)
        cm.__exit__(None, None, None)
        raise


@contextlib.asynccontextmanager
async def closing(run: AnswerRun):
    try:
        yield run
    finally:
        await run.close()
