"""A small retrying JSON-over-HTTP client shared by the HTTP backends (embeddings, reranking).

* ``get_json`` / ``post_json`` send one request; ``post_many`` sends many with at most ``max_concurrency``
  requests in flight (threads; the public API stays synchronous).
* Timeouts, HTTP 408/429/5xx and transport errors (connection refused or reset, timeouts, a server that
  disconnects) are retried with exponential backoff and jitter, honouring ``Retry-After`` up to the cap.
* When retries are exhausted, or the server answers a non-retryable error, :class:`evolve.errors.BackendError`
  is raised with a single line, e.g. ``embedding endpoint http://127.0.0.1:8000/v1 failed after 5 retries:
  connection refused``.
* The API key is sent as ``Authorization: Bearer`` and never appears in messages or logs: every text that
  leaves this module is scrubbed of it (and of credentials inlined in the URL).

Only ``httpx`` is imported (it is a core dependency).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlsplit

import httpx

from evolve.errors import BackendError
from evolve.secrets import redact_url

__all__ = ["RETRY_STATUSES", "HTTPClient", "normalize_base_url"]

log = logging.getLogger("evolve.http")

#: statuses worth retrying: request timeout, too many requests, every 5xx except 501 (not implemented)
RETRY_STATUSES = frozenset({408, 429} | set(range(500, 600)) - {501})


def normalize_base_url(url: str, *, add_v1: bool = True) -> str:
    """Strip trailing slashes; a bare ``http://host:port`` gets the OpenAI-style ``/v1`` (unless ``add_v1`` is
    off: a server's root, where vLLM serves ``/tokenize``)."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise BackendError(f"expected an http(s) URL such as http://127.0.0.1:8000/v1, got '{redact_url(url)}'")
    if add_v1 and parts.path in {"", "/"}:
        url += "/v1"
    return url


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _transport_reason(exc: BaseException, timeout: float) -> str:
    msg = str(exc).lower()
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout:g}s"
    if "refused" in msg:
        return "connection refused"
    if "all connection attempts failed" in msg:  # httpx's async transport (anyio) says no more than this
        return "could not connect (connection refused or host unreachable)"
    if "reset" in msg:
        return "connection reset"
    if isinstance(exc, httpx.RemoteProtocolError) or "disconnect" in msg:
        return "server disconnected"
    if "name or service not known" in msg or "nodename nor servname" in msg:
        return "host not found"
    return _one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, 160)


def _error_detail(resp: httpx.Response) -> str:
    """The server's own message for an error response, when it says one."""
    try:
        body = resp.json()
    except ValueError:
        body = resp.text
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body.get("message", body)))
        if isinstance(err, dict):
            err = err.get("message", err)
        body = err
    return _one_line(str(body), 200)


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class HTTPClient:
    """JSON requests to one base URL with retries, backoff, bounded concurrency and a hidden API key.

    ``what`` names the endpoint in messages ("embedding endpoint", "rerank endpoint").
    ``attempts`` counts every HTTP attempt made (tests and logs use it); ``retries`` counts the repeats.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        max_concurrency: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        what: str = "endpoint",
        headers: dict[str, str] | None = None,
        add_v1: bool = True,
    ):
        self.base_url = normalize_base_url(base_url, add_v1=add_v1)
        #: the URL as messages show it: inline credentials (``http://user:pw@host``) become ``***``
        self.display_url = redact_url(self.base_url) or self.base_url
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.max_concurrency = max(1, int(max_concurrency))
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.what = what
        self._secret = api_key or None
        self._headers = {"Accept": "application/json", **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self.attempts = 0
        self.retries = 0

    # ------------------------------------------------------------------ plumbing

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.timeout),
                    headers=self._headers,
                    limits=httpx.Limits(
                        max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
                    ),
                    # a server that dies mid-run must surface as a connection error, not hang in a proxy
                    trust_env=False,
                )
            return self._client

    def scrub(self, text: str) -> str:
        """``text`` with the API key (if any) replaced by ``***``."""
        text = str(text).replace(self.base_url, self.display_url)
        if self._secret:
            text = text.replace(self._secret, "***")
        return text

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def request_headers(self, *, stream: bool = False) -> dict[str, str]:
        """The headers every request carries (the key included); ``stream`` asks for server-sent events."""
        headers = dict(self._headers)
        if stream:
            headers["Accept"] = "text/event-stream"
        return headers

    def _fail(self, message: str) -> BackendError:
        return BackendError(self.scrub(_one_line(message, 400)))

    def _delay(self, retry: int, retry_after: float | None) -> float:
        cap = min(self.backoff_max, self.backoff_base * (2**retry))
        delay = cap / 2 + random.uniform(0, cap / 2)  # "equal jitter": never zero, never above the cap
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay

    def _once(self, method: str, path: str, payload: Any) -> Any:
        with self._lock:
            self.attempts += 1
        try:
            resp = self._http().request(method, self.url(path), json=payload)
        except httpx.TransportError as exc:  # connect/read/write errors, timeouts, protocol errors
            raise _Retryable(_transport_reason(exc, self.timeout)) from None
        if resp.status_code in RETRY_STATUSES:
            retry_after = None
            ra = resp.headers.get("retry-after")
            if ra is not None:
                try:
                    retry_after = max(0.0, float(ra))
                except ValueError:
                    retry_after = None
            detail = _error_detail(resp)
            reason = f"HTTP {resp.status_code} {resp.reason_phrase}".rstrip()
            raise _Retryable(f"{reason} ({detail})" if detail else reason, retry_after)
        if resp.status_code >= 400:
            detail = _error_detail(resp)
            raise self._fail(
                f"{self.what} {self.display_url} answered {method} /{path.lstrip('/')} with HTTP {resp.status_code}"
                f"{' ' + resp.reason_phrase if resp.reason_phrase else ''}{': ' + detail if detail else ''}"
            )
        try:
            return resp.json()
        except ValueError:
            raise self._fail(
                f"{self.what} {self.display_url} answered {method} /{path.lstrip('/')} with a body that is not JSON: "
                f"{_one_line(resp.text, 120)!r}"
            ) from None

    def request(self, method: str, path: str, payload: Any = None, *, cancelled: threading.Event | None = None) -> Any:
        """One JSON request with retries; returns the decoded JSON body."""
        retry = 0
        while True:
            try:
                return self._once(method, path, payload)
            except _Retryable as exc:
                if retry >= self.max_retries or (cancelled is not None and cancelled.is_set()):
                    raise self._fail(
                        f"{self.what} {self.display_url} failed after {retry} retr{'y' if retry == 1 else 'ies'}: "
                        f"{exc.reason}"
                    ) from None
                delay = self._delay(retry, exc.retry_after)
                retry += 1
                with self._lock:
                    self.retries += 1
                log.warning(
                    "%s",
                    self.scrub(
                        f"{method} {self.url(path)}: {exc.reason}; retry {retry}/{self.max_retries} in {delay:.2f}s"
                    ),
                )
                if cancelled is not None:
                    if cancelled.wait(delay):
                        raise self._fail(f"{self.what} {self.display_url} request cancelled: {exc.reason}") from None
                else:
                    time.sleep(delay)

    def get_json(self, path: str) -> Any:
        return self.request("GET", path)

    def post_json(self, path: str, payload: Any) -> Any:
        return self.request("POST", path, payload)

    def post_many(
        self,
        path: str,
        payloads: Sequence[Any],
        *,
        on_result: Callable[[int, Any], None] | None = None,
    ) -> list[Any]:
        """POST every payload, at most ``max_concurrency`` in flight; results in payload order.

        ``on_result(i, result)`` runs in the calling thread as each request finishes (for progress).
        The first failure cancels what has not started and is raised.
        """
        n = len(payloads)
        if n == 0:
            return []
        results: list[Any] = [None] * n
        if self.max_concurrency == 1 or n == 1:
            for i, p in enumerate(payloads):
                results[i] = self.post_json(path, p)
                if on_result is not None:
                    on_result(i, results[i])
            return results
        cancelled = threading.Event()
        pool = ThreadPoolExecutor(max_workers=min(self.max_concurrency, n), thread_name_prefix="evolve-http")
        try:
            futures = {pool.submit(self.request, "POST", path, p, cancelled=cancelled): i for i, p in enumerate(payloads)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    exc = fut.exception()
                    if exc is not None:
                        cancelled.set()
                        raise exc
                    i = futures[fut]
                    results[i] = fut.result()
                    if on_result is not None:
                        on_result(i, results[i])
        finally:
            cancelled.set()  # workers in a backoff wait give up at once
            pool.shutdown(wait=False, cancel_futures=True)
        return results

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:  # never shows the key
        return f"HTTPClient({self.display_url!r}, what={self.what!r})"
