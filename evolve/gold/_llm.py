"""A chat client for the LLM a team already runs: OpenAI-compatible ``POST {url}/chat/completions`` (vLLM's
server, Ollama's ``/v1``, any server speaking that API) through the project's retrying HTTP client.

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

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from evolve._http import HTTPClient
from evolve._platform import api_key_from_env
from evolve.errors import BackendError

__all__ = ["Answer", "ChatClient", "LLMStats", "parse_json_object"]

_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n?(.*?)(?:```|$)", re.S)


def _first_balanced_object(text: str) -> str | None:
    """The first ``{...}`` of ``text`` whose braces balance (braces inside JSON strings do not count)."""
    start = text.find("{")
    while start >= 0:
        depth, in_str, esc = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start : i + 1]
        start = text.find("{", start + 1)
    return None


def _loads_object(text: str) -> dict | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def parse_json_object(text: str) -> tuple[dict | None, str]:
    """The JSON object in a model's reply, and how it was found.

    ``how`` is ``"ok"`` (the reply is the object), ``"fenced"`` (inside a Markdown code fence), ``"extracted"``
    (the first balanced ``{...}`` among other text), ``"repaired"`` (broken JSON mended by ``json-repair``:
    trailing commas, single quotes, an unclosed string or brace, as a reply cut at ``max_tokens`` has) or
    ``"failed"`` (no object: the dict is None).
    """
    text = (text or "").strip()
    if not text:
        return None, "failed"
    obj = _loads_object(text)
    if obj is not None:
        return obj, "ok"
    how = "extracted"
    fenced = _FENCE.search(text)
    if fenced:
        text, how = fenced.group(1).strip(), "fenced"
        obj = _loads_object(text)
        if obj is not None:
            return obj, how
    candidate = _first_balanced_object(text)
    if candidate is not None:
        obj = _loads_object(candidate)
        if obj is not None:
            return obj, how
    start = text.find("{")
    if start < 0:
        return None, "failed"
    import json_repair

    try:
        obj = json_repair.loads(candidate if candidate is not None else text[start:])
    except Exception:  # noqa: BLE001 - the library's own failure is "no object", never ours to raise
        obj = None
    if isinstance(obj, list):  # "{...} {...}" comes back as a list: the first object is the answer
        obj = next((o for o in obj if isinstance(o, dict)), None)
    if isinstance(obj, dict) and obj:
        return obj, "repaired"
    return None, "failed"


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
    ):
        self.model = model
        self.json_mode = json_mode
        self.http = _TimedClient(
            url,
            api_key=api_key_from_env(api_key_env, "--llm-api-key-env"),
            timeout=timeout,
            max_retries=max_retries,
            max_concurrency=concurrency,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            what="LLM endpoint",
        )
        self.stats = LLMStats()
        self._info: dict | None = None

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

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"ChatClient({self.display_url!r}, model={self.model!r})"
