"""A chat client for the LLM a team already runs: OpenAI-compatible ``POST {url}/chat/completions`` (vLLM's
server, Ollama's ``/v1``, any server speaking that API) through the project's retrying HTTP client. Shared by
``evolve gold`` (questions, grades) and ``evolve answer`` / ``evolve serve`` (answers).

* ``GET {url}/models`` checks once that the model is served (a one-line error lists what is) and tells a vLLM
  server (``owned_by: vllm``) from the rest: only vLLM is sent its own request fields.
* :meth:`ChatClient.json_many` asks for one JSON object per prompt (``response_format: json_object``, which vLLM
  and Ollama take). Local models break JSON all the same; :func:`parse_json_object` repairs what it can (code
  fences, prose around the object, trailing commas, unclosed strings: the ``json-repair`` library) and an answer
  that is still unreadable, or lacks what the caller needs, is asked again once. What stays unreadable is
  counted in :class:`LLMStats`, never raised.
* :meth:`ChatClient.choice_many` asks for one of a few short answers (a grade "0".."3"): vLLM is forced to one
  of them with ``structured_outputs: {"choice": [...]}`` (vllm 0.32's field; ``guided_choice`` is gone) and
  ``max_tokens`` 1; other servers get a few tokens and the first allowed answer in the reply counts.
* :meth:`ChatClient.stream` and :meth:`ChatClient.astream` stream one reply (``stream: true``, server-sent
  events; see :mod:`evolve.llm._stream`), asking for the token counts with ``stream_options`` (dropped, and
  remembered, when a server refuses the field).
* :meth:`ChatClient.count_tokens` counts with the served model's own tokenizer where the server offers vLLM's
  ``POST /tokenize``; None where it does not (remembered), so the caller counts with a local tokenizer. Counting
  is a short request: it gets :data:`TOKENIZE_TIMEOUT` seconds, and after one that fails (a server down or
  stalled) the server is not asked again for ``tokenize_cooldown`` seconds: an answer's packing, and so its
  sources, never wait on an LLM that does not answer.
* Transport faults (connection refused, HTTP 5xx, timeouts) are retried with backoff by
  :class:`evolve._http.HTTPClient`; when retries run out, :class:`evolve.errors.BackendError` (one line) ends
  the batch. A request the server refuses (HTTP 4xx: a prompt longer than its context, say) is one bad answer
  (``how="refused"``, counted) unless it refuses every request of the batch: then the requests are wrong, and
  that is raised. The API key comes from an environment variable and never appears in a message or a record.
* Tokens (the answers' ``usage``) and seconds (per request, retries included; per batch, wall clock) are
  recorded.

Imports httpx and json-repair only.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from evolve._http import HTTPClient
from evolve._platform import api_key_from_env
from evolve.errors import BackendError
from evolve.llm._json import parse_json_object
from evolve.llm._stream import AsyncChatStream, ChatStream

__all__ = ["Answer", "ChatClient", "LLMStats", "TOKENIZE_TIMEOUT"]

#: seconds a ``POST /tokenize`` may take (whatever the chat timeout): counting is quick or the server is in trouble
TOKENIZE_TIMEOUT = 5.0


@dataclass
class Answer:
    """One reply. ``data`` is the parsed JSON object (or ``{"choice": "2"}``), None when unreadable."""

    text: str
    data: dict | None
    how: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    attempts: int = 1
    finish_reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.data is not None

    def record(self) -> dict[str, Any]:
        """What provenance keeps of it (the raw reply, cut to 500 characters)."""
        return {"raw": self.text[:500], "parse": self.how, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 4),
                "attempts": self.attempts, "finish_reason": self.finish_reason}


@dataclass
class LLMStats:
    """Counts of one client's work. ``parsed`` counts replies by how they were read (ok, fenced, extracted,
    repaired, forced, first-match, refused, failed); ``retried`` the prompts asked again after an unreadable
    reply."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    retried: int = 0
    parsed: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """Replies without a usable answer: unreadable, or refused by the server."""
        return self.parsed.get("failed", 0) + self.parsed.get("refused", 0)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seconds"] = round(self.seconds, 3)
        d["failed"] = self.failed
        return d


class _TimedClient(HTTPClient):
    """The project's HTTP client; each decoded answer also carries the seconds its request took (retries in).

    A POST the server refuses (a 4xx such as "prompt longer than the context", or a body that is not JSON) is
    one bad answer, not the end of the batch: it comes back as ``{"_evolve_refused": message}``. Faults that
    retries are for (refused connections, 5xx, timeouts) still raise once the retries are spent.
    """

    def _once(self, method, path, payload):
        try:
            return super()._once(method, path, payload)
        except BackendError as exc:
            if method != "POST":
                raise
            return {"_evolve_refused": str(exc)}

    def request(self, method, path, payload=None, *, cancelled=None):
        t0 = time.perf_counter()
        body = super().request(method, path, payload, cancelled=cancelled)
        if isinstance(body, dict):
            body["_evolve_seconds"] = time.perf_counter() - t0
        return body


def _content(body: Any) -> tuple[str, str | None]:
    """The reply text and finish reason of a chat-completions body; ``""`` for a body without one."""
    try:
        choice = body["choices"][0]
        msg = choice.get("message") or {}
        return str(msg.get("content") or choice.get("text") or ""), choice.get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        return "", None


class ChatClient:
    """Chat completions from one served model. ``concurrency`` bounds the requests in flight."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 3,
        concurrency: int = 2,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        json_mode: bool = True,
        stream_retries: int = 1,
        key_field: str = "--llm-api-key-env",
    ):
        self.model = model
        self.json_mode = json_mode
        self.timeout = float(timeout)
        #: attempts after the first for a stream that fails before its first byte (refused, HTTP 5xx)
        self.stream_retries = int(stream_retries)
        self.http = _TimedClient(
            url,
            api_key=api_key_from_env(api_key_env, key_field),
            timeout=timeout,
            max_retries=max_retries,
            max_concurrency=concurrency,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            what="LLM endpoint",
        )
        self.stats = LLMStats()
        self._info: dict | None = None
        self._stream_usage = True  # ask for stream_options.include_usage until a server refuses it
        self._tokenize: bool | None = None  # POST /tokenize offered? None: not asked yet
        #: seconds without asking /tokenize after a request to it failed (the local tokenizer counts meanwhile)
        self.tokenize_cooldown = 30.0
        self._tokenize_after = 0.0  # time.monotonic() before which /tokenize is not asked
        self._tokenize_http: HTTPClient | None = None
        self._async: dict[int, Any] = {}  # event loop id -> httpx.AsyncClient
        self._lock = threading.Lock()

    @property
    def display_url(self) -> str:
        return self.http.display_url

    def info(self) -> dict:
        """The server's ``/models`` entry for the model (fetched once); a one-line error when it is not served."""
        if self._info is None:
            body = self.http.get_json("models")
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise BackendError(f"LLM endpoint {self.display_url}/models answered no model list "
                                   "(expected {'data': [...]})")
            served = [m for m in data if isinstance(m, dict) and "id" in m]
            match = next((m for m in served if m["id"] == self.model), None)
            if match is None:
                ids = ", ".join(sorted(str(m["id"]) for m in served)) or "nothing"
                raise BackendError(f"--llm-model: '{self.model}' is not served by {self.display_url}; it serves: {ids}")
            self._info = match
        return self._info

    @property
    def is_vllm(self) -> bool:
        return str(self.info().get("owned_by", "")).lower() == "vllm"

    def identity(self) -> dict[str, Any]:
        """What provenance records of the model: its id, and where the server says them, root and owner."""
        info = self.info()
        out = {"model": self.model, "url": self.display_url}
        for key in ("root", "owned_by", "max_model_len"):
            if info.get(key) is not None:
                out[key] = info[key]
        return out

    # ------------------------------------------------------------------ requests

    def _send(self, payloads: list[dict], on_done: Callable[[int], None] | None, *,
              all_refused_fatal: bool = True) -> list[Answer]:
        """POST every payload (bounded concurrency); an answer per payload. When the server refuses every one of
        them, the requests themselves are wrong (a parameter it does not take): that is raised, not counted."""
        t0 = time.perf_counter()
        bodies = self.http.post_many("chat/completions", payloads,
                                     on_result=(lambda i, _b: on_done(1)) if on_done else None)
        self.stats.seconds += time.perf_counter() - t0
        refused = [b["_evolve_refused"] for b in bodies if isinstance(b, dict) and "_evolve_refused" in b]
        if all_refused_fatal and bodies and len(refused) == len(bodies):
            raise BackendError(refused[0])
        out = []
        for body in bodies:
            if isinstance(body, dict) and "_evolve_refused" in body:
                out.append(Answer(text=body["_evolve_refused"], data=None, how="refused",
                                  seconds=float(body.get("_evolve_seconds", 0.0))))
                self.stats.requests += 1
                continue
            text, finish = _content(body)
            usage = body.get("usage") if isinstance(body, dict) else None
            usage = usage if isinstance(usage, dict) else {}
            ans = Answer(text=text, data=None, how="failed", finish_reason=finish,
                         prompt_tokens=int(usage.get("prompt_tokens") or 0),
                         completion_tokens=int(usage.get("completion_tokens") or 0),
                         seconds=float(body.get("_evolve_seconds", 0.0)) if isinstance(body, dict) else 0.0)
            self.stats.requests += 1
            self.stats.prompt_tokens += ans.prompt_tokens
            self.stats.completion_tokens += ans.completion_tokens
            out.append(ans)
        return out

    def _count(self, answers: Sequence[Answer]) -> None:
        for a in answers:
            self.stats.parsed[a.how] = self.stats.parsed.get(a.how, 0) + 1

    def json_many(
        self,
        prompts: Sequence[list[dict]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.7,
        seeds: Sequence[int] | None = None,
        accept: Callable[[dict], bool] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[Answer]:
        """One JSON object per prompt (chat messages). An unreadable reply, or one ``accept`` refuses, is asked
        again once (another seed); what is still unreadable comes back with ``data=None`` and is counted."""
        self.info()

        def payload(messages, seed):
            p: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": int(max_tokens),
                                 "temperature": float(temperature)}
            if seed is not None:
                p["seed"] = int(seed)
            if self.json_mode:
                p["response_format"] = {"type": "json_object"}
            return p

        seeds = list(seeds) if seeds is not None else [None] * len(prompts)
        answers = self._send([payload(m, s) for m, s in zip(prompts, seeds)], progress)

        def read(a: Answer) -> None:
            data, how = parse_json_object(a.text)
            if data is not None and accept is not None and not accept(data):
                data, how = None, "failed"
            a.data, a.how = data, how

        for a in answers:
            if a.how != "refused":
                read(a)
        again = [i for i, a in enumerate(answers) if not a.ok and a.how != "refused"]
        if again:
            self.stats.retried += len(again)
            retry = self._send([payload(prompts[i], None if seeds[i] is None else seeds[i] + 7919) for i in again],
                               None, all_refused_fatal=False)
            for i, b in zip(again, retry):
                if b.how != "refused":
                    read(b)
                b.attempts = 2
                b.prompt_tokens += answers[i].prompt_tokens
                b.completion_tokens += answers[i].completion_tokens
                b.seconds += answers[i].seconds
                if not b.ok:
                    b.text = b.text or answers[i].text
                answers[i] = b
        self._count(answers)
        return answers

    def choice_many(
        self,
        prompts: Sequence[list[dict]],
        choices: Sequence[str],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> list[Answer]:
        """One of ``choices`` per prompt, greedy: ``data={"choice": c}``, or None (counted) when the reply has none.

        vLLM is forced to a choice (``structured_outputs``) in one token; other servers get ``max_tokens`` 4
        (a reply may lead with a space or a quote) and the first allowed answer in the reply counts.
        """
        choices = [str(c) for c in choices]
        forced = self.is_vllm
        payloads = []
        for messages in prompts:
            p: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0.0,
                                 "max_tokens": 1 if forced else 4}
            if forced:
                p["structured_outputs"] = {"choice": choices}
            payloads.append(p)
        answers = self._send(payloads, progress)
        pattern = re.compile("|".join(re.escape(c) for c in sorted(choices, key=len, reverse=True)))
        for a in answers:
            if a.how == "refused":
                continue
            text = a.text.strip()
            if forced and text in choices:
                a.data, a.how = {"choice": text}, "forced"
                continue
            m = pattern.search(text)
            if m:
                a.data, a.how = {"choice": m.group(0)}, "first-match"
            else:
                a.data, a.how = None, "failed"
        self._count(answers)
        return answers

    # ------------------------------------------------------------------ streaming

    def stream_payload(self, messages: list[dict], *, max_tokens: int, temperature: float,
                       seed: int | None = None) -> dict[str, Any]:
        """The body of a streamed chat completion."""
        p: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": int(max_tokens),
                             "temperature": float(temperature), "stream": True}
        if self._stream_usage:
            p["stream_options"] = {"include_usage": True}
        if seed is not None:
            p["seed"] = int(seed)
        return p

    def stream(self, messages: list[dict], *, max_tokens: int = 256, temperature: float = 0.0,
               seed: int | None = None) -> ChatStream:
        """One reply, streamed, read in this thread: ``for piece in stream: ...``; then ``stream.result``."""
        return ChatStream(self, self.stream_payload(messages, max_tokens=max_tokens, temperature=temperature,
                                                    seed=seed))

    def astream(self, messages: list[dict], *, max_tokens: int = 256, temperature: float = 0.0,
                seed: int | None = None) -> AsyncChatStream:
        """One reply, streamed, on the running event loop: ``async for piece in stream``; ``await
        stream.aclose()`` closes the connection (the server stops generating)."""
        return AsyncChatStream(self, self.stream_payload(messages, max_tokens=max_tokens, temperature=temperature,
                                                         seed=seed))

    def _async_http(self):
        """The httpx.AsyncClient of the running event loop (one per loop: a client is bound to its loop)."""
        import asyncio

        import httpx

        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async.get(id(loop))
            if client is None or client.is_closed:
                client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), trust_env=False,
                                           headers=self.http.request_headers())
                self._async[id(loop)] = client
        return client

    # ------------------------------------------------------------------ tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int] | None:
        """Token counts of ``texts`` by the served model's own tokenizer (vLLM's ``POST /tokenize``, no special
        tokens), or None when the server offers no such endpoint (asked once, remembered) or could not be
        reached this time (then not asked again for ``tokenize_cooldown`` seconds)."""
        if self._tokenize is False or time.monotonic() < self._tokenize_after:
            return None
        if not texts:
            return []
        http = self._tokenize_client()
        payloads = [{"model": self.model, "prompt": t, "add_special_tokens": False} for t in texts]
        try:
            bodies = http.post_many("tokenize", payloads)
        except BackendError as err:
            if " with HTTP 4" in str(err) or "not JSON" in str(err):
                self._tokenize = False  # 404 on Ollama and most servers: they have no /tokenize
            else:  # down, stalled or failing: count locally for a while rather than wait on it answer after answer
                self._tokenize_after = time.monotonic() + self.tokenize_cooldown
            return None
        counts = []
        for b in bodies:
            n = b.get("count") if isinstance(b, dict) else None
            if n is None and isinstance(b, dict) and isinstance(b.get("tokens"), list):
                n = len(b["tokens"])
            if not isinstance(n, int):
                self._tokenize = False
                return None
            counts.append(n)
        self._tokenize = True
        return counts

    @property
    def tokenize_offered(self) -> bool | None:
        """Whether the server counts tokens (None: not asked yet)."""
        return self._tokenize

    def _tokenize_client(self) -> HTTPClient:
        """vLLM serves ``/tokenize`` beside ``/v1``, at the server's root."""
        with self._lock:
            if self._tokenize_http is None:
                base = self.http.base_url
                root = base[: -len("/v1")] if base.endswith("/v1") else base
                self._tokenize_http = HTTPClient(root, api_key=self.http._secret, timeout=min(self.timeout, TOKENIZE_TIMEOUT),
                                                 max_retries=0, max_concurrency=8, what="LLM tokenize endpoint", add_v1=False)
            return self._tokenize_http

    def close(self) -> None:
        """Close the connections; an async client belongs to its event loop: :meth:`aclose` there closes it."""
        self.http.close()
        with self._lock:
            tok, self._tokenize_http = self._tokenize_http, None
            self._async = {}
        if tok is not None:
            tok.close()

    async def aclose(self) -> None:
        """Close the running event loop's async client (and the rest, as :meth:`close`)."""
        import asyncio

        with self._lock:
            client = self._async.pop(id(asyncio.get_running_loop()), None)
        if client is not None:
            await client.aclose()
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"ChatClient({self.display_url!r}, model={self.model!r})"
