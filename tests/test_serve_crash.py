"""Acceptance 3: SIGKILL of `evolve serve` under load, then a restart: every acknowledged event is stored, nothing
else is (but what was in flight at the kill), and the store opens cleanly."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from serve_helpers import Server, post, write_mixed_corpus

pytestmark = pytest.mark.slow

SPARSE_ENGLISH = "retrieval:\n  mode: sparse\n  top_k: 100\nsparse:\n  tokenizer: english\n"
QUERIES = ["printer offline", "reset password", "travel expenses receipt", "printer network laptop"]


def test_sigkill_under_load_loses_no_acknowledged_event(tmp_path):
    import httpx

    from evolve.feedback._sqlite import SQLiteFeedbackStore

    corpus = write_mixed_corpus(tmp_path / "corpus")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "champion.yaml").write_text(SPARSE_ENGLISH, encoding="utf-8")
    args = ["--workspace", str(ws), "--dataset", str(corpus)]
    server = Server(args, tmp_path / "serve-1.log")

    acked: set[str] = set()
    in_flight: dict[str, dict] = {}  # event id -> the request body, for events whose answer never came
    lock = threading.Lock()
    stop = threading.Event()

    def client(i: int) -> None:
        with httpx.Client(timeout=10) as http:
            n = 0
            while not stop.is_set():
                try:
                    r = http.post(server.url + "/v1/retrieve", json={"query": QUERIES[n % len(QUERIES)], "k": 3,
                                                                       "client_id": f"load-{i}"})
                    r.raise_for_status()
                except httpx.HTTPError:
                    return  # the server is gone
                data = r.json()
                n += 1
                for hit in data["results"]:
                    body = {"query_id": data["query_id"], "action_name": "click", "object_id": hit["doc_id"],
                            "event_id": uuid.uuid4().hex}
                    with lock:
                        in_flight[body["event_id"]] = body
                    try:
                        fr = http.post(server.url + "/v1/feedback", json=body)
                    except httpx.HTTPError:
                        return
                    assert fr.status_code == 201, fr.text
                    with lock:
                        acked.add(fr.json()["event_id"])
                        del in_flight[body["event_id"]]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()  # SIGKILL, mid-load
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acked) >= 150, "the load never got going"
    unanswered = dict(in_flight)
    assert len(unanswered) <= len(threads)

    store = SQLiteFeedbackStore(ws / "feedback.sqlite")
    assert store.check() == "ok"
    stored = store.event_ids()
    store.close()
    assert acked <= stored, f"{len(acked - stored)} acknowledged events were lost"
    assert stored - acked <= set(unanswered), "events nobody sent were stored"

    # the restarted server takes the clients' retries of what they never heard back about: stored once each
    again = Server(args, tmp_path / "serve-2.log")
    try:
        for body in unanswered.values():
            r = post(again.url + "/v1/feedback", body)  # its query was answered, so it is stored
            assert r.status_code == 201, r.text
            acked.add(body["event_id"])
        store = SQLiteFeedbackStore(ws / "feedback.sqlite")
        assert store.event_ids() == acked
        assert store.check() == "ok"
        store.close()
    finally:
        again.stop()
