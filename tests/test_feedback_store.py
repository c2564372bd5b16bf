"""The feedback (UBI 1.3.0) store: the same tests on SQLite and on the real local PostgreSQL."""

from __future__ import annotations

import os
import secrets
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from conftest import expect_one_line

from evolve.feedback import event_record, iso, open_feedback_store, parse_when, query_record, ubi_validator
from evolve.feedback._ubi import ubi_schema_verbatim

PG_HOST = os.environ.get("EVOLVE_TEST_PGHOST", "127.0.0.1")
PG_PORT = os.environ.get("EVOLVE_TEST_PGPORT", "5432")
PG_USER = os.environ.get("EVOLVE_TEST_PGUSER", "root")
PG_DB = os.environ.get("EVOLVE_TEST_PGDB", "test")


def pg_url() -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_DB}"


def pg_store(prefix: str):
    """A PostgreSQL store with throwaway tables, or a skip (a failure under CI=true)."""
    from evolve.errors import StorageError
    from evolve.feedback._postgres import PostgresFeedbackStore

    try:
        return PostgresFeedbackStore(pg_url(), prefix=prefix, connect_timeout=5)
    except StorageError as err:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must have PostgreSQL at {PG_HOST}:{PG_PORT} (.ci/run starts it): {err}")
        pytest.skip(f"PostgreSQL is unreachable: {err}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, workspace):
    if request.param == "sqlite":
        s = open_feedback_store(workspace)
        yield s
        s.close()
        return
    s = pg_store(f"evolve_t{secrets.token_hex(4)}_")
    yield s
    s.drop()
    s.close()


def _query(qid: str, client: str = "c1", hits=("d1", "d2", "d3"), ts: str | None = None, text: str = "비타민 D 골절"):
    return query_record(query_id=qid, client_id=client, user_query=text, hit_ids=list(hits),
                        attributes={"config_version": "abc123", "k": len(hits)}, timestamp=ts)


def _event(qid: str, action: str, doc: str | None, rank: int, client: str = "c1", ts: str | None = None,
           event_id: str | None = None):
    return event_record(event_id=event_id or uuid.uuid4().hex, action_name=action, query_id=qid, client_id=client,
                        object_id=doc, ordinal=rank, config_version="abc123", timestamp=ts)


def test_records_round_trip_valid_against_the_ubi_schemas(store):
    """Every stored record, read back, is valid against the vendored UBI 1.3.0 schemas (date-time included)."""
    store.add_query(_query("q1"))
    store.add_query(_query("q2", client="c2", text="does vitamin D prevent fractures"))
    for action, doc, rank in (("click", "d1", 1), ("useful", "d2", 2), ("not_useful", "d3", 3),
                              ("answered", "d1", 1), ("no_answer", None, 0)):
        assert store.add_event(_event("q1", action, doc, rank))
    queries, events = store.queries(), store.events()
    assert [q["query_id"] for q in queries] == ["q1", "q2"]
    assert queries[0]["user_query"] == "비타민 D 골절"  # Korean survives both stores byte for byte
    assert queries[0]["query_response_hit_ids"] == ["d1", "d2", "d3"]
    assert len(events) == 5
    qv, ev = ubi_validator("query"), ubi_validator("event")
    for q in queries:
        assert not list(qv.iter_errors(q)), q
    for e in events:
        assert not list(ev.iter_errors(e)), e
    assert {e["action_name"] for e in events} == {"click", "useful", "not_useful", "answered", "no_answer"}
    click = next(e for e in events if e["action_name"] == "click")
    assert click["event_attributes"]["object"]["object_id"] == "d1"
    assert click["event_attributes"]["position"]["ordinal"] == 1
    assert click["event_attributes"]["config_version"] == "abc123"
    assert store.get_query("q2")["client_id"] == "c2"
    assert store.get_query("nope") is None
    assert store.check() == "ok"


def test_the_validator_rejects_what_the_schema_forbids():
    """The validator is not a rubber stamp: a bad timestamp, a missing position and an over-long id fail."""
    ev = ubi_validator("event")
    good = _event("q1", "click", "d1", 1)
    assert not list(ev.iter_errors(good))
    bad_time = {**good, "timestamp": "yesterday"}
    no_position = {**good, "event_attributes": {"object": {"object_id": "d1"}}}
    long_id = {**good, "query_id": "x" * 101}
    for bad in (bad_time, no_position, long_id):
        assert list(ev.iter_errors(bad)), bad
    assert list(ubi_validator("query").iter_errors({"query_id": "q"}))  # user_query is required


def test_upstream_event_schema_rejects_click_verbatim():
    """Upstream's ``action_name`` is ``oneOf`` (an enum of common names, any string): ``click`` matches both
    branches, so the verbatim schema rejects it. We validate with ``anyOf`` (schemas/README.md); when upstream
    fixes the schema, this test fails and the correction can go."""
    verbatim = ubi_validator("event", verbatim=True)
    errors = [e.message for e in verbatim.iter_errors(_event("q1", "click", "d1", 1))]
    assert errors and "valid under each of" in errors[0]
    assert not list(verbatim.iter_errors(_event("q1", "useful", "d1", 1)))  # a name outside the enum passes
    assert "oneOf" in ubi_schema_verbatim("event")["properties"]["action_name"]


def test_an_answer_sets_one_query_attribute_and_keeps_the_rest(store):
    """What /v1/answer adds once its answer is done: query_attributes.answer, the rest of the record unchanged,
    Korean kept, the record still valid UBI; an unknown query id is reported, not created."""
    store.add_query(_query("qa"))
    before = store.get_query("qa")
    assert store.set_query_attribute("qa", "answer", {"pending": True})
    assert store.set_query_attribute("qa", "answer", {"cited": ["d2"], "refused": False, "grounded": True,
                                                      "note": "근거 있음"})
    after = store.get_query("qa")
    assert after["query_attributes"] == {**before["query_attributes"],
                                         "answer": {"cited": ["d2"], "refused": False, "grounded": True,
                                                    "note": "근거 있음"}}
    assert {k: v for k, v in after.items() if k != "query_attributes"} == {
        k: v for k, v in before.items() if k != "query_attributes"}
    assert not list(ubi_validator("query").iter_errors(after))
    assert not store.set_query_attribute("no-such-query", "answer", {}) and store.get_query("no-such-query") is None


def test_events_are_idempotent_on_their_id(store):
    store.add_query(_query("q1"))
    e = _event("q1", "click", "d1", 1, event_id="fixed-id")
    assert store.add_event(e) is True
    assert store.add_event(e) is False  # a retried request stores it once
    assert store.event_ids() == {"fixed-id"}


def test_a_duplicate_query_id_is_one_line(store):
    from evolve.errors import StorageError



    store.add_query(_query("q1"))
    expect_one_line(lambda: store.add_query(_query("q1")), "q1", "stored already", exc=StorageError)


def test_delete_a_client_and_an_old_period(store):
    old = iso(datetime.now(UTC) - timedelta(days=40))
    store.add_query(_query("q-old", client="alice", ts=old))
    store.add_event(_event("q-old", "click", "d1", 1, client="alice", ts=old))
    store.add_query(_query("q-a", client="alice"))
    store.add_event(_event("q-a", "useful", "d2", 2, client="alice"))
    store.add_query(_query("q-b", client="bob"))
    store.add_event(_event("q-b", "click", "d1", 1, client="bob"))
    store.add_event(_event("q-b", "answered", "d1", 1, client="bob"))
    assert store.delete_before(datetime.now(UTC) - timedelta(days=30)) == (1, 1)
    assert [q["query_id"] for q in store.queries()] == ["q-a", "q-b"]
    assert store.delete_client("alice") == (1, 1)
    assert [q["query_id"] for q in store.queries()] == ["q-b"]
    assert {e["client_id"] for e in store.events()} == {"bob"}
    assert store.delete_client("nobody") == (0, 0)
    since = store.events(since=datetime.now(UTC) - timedelta(minutes=5))
    assert len(since) == 2 and store.events(since=datetime.now(UTC) + timedelta(minutes=5)) == []


def test_threads_share_one_store(store):
    store.add_query(_query("q1"))
    ids: list[str] = []
    lock = threading.Lock()

    def work(i):
        for _ in range(10):
            e = _event("q1", "click", "d1", 1, client=f"t{i}")
            store.add_event(e)
            with lock:
                ids.append(e["event_id"])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.event_ids() == set(ids) and len(ids) == 60
    assert store.counts()["by_action"] == {"click": 60}


def test_sqlite_store_survives_a_reopen(workspace):
    s = open_feedback_store(workspace)
    s.add_query(_query("q1"))
    s.add_event(_event("q1", "click", "d1", 1, event_id="e1"))
    s.close()
    again = open_feedback_store(workspace, f"sqlite:///{workspace.path / 'feedback.sqlite'}")
    assert again.event_ids() == {"e1"} and again.check() == "ok"
    again.close()


def test_bad_feedback_url_and_dates_are_one_line(workspace):
    from evolve.errors import ConfigError, StorageError



    expect_one_line(lambda: open_feedback_store(workspace, "mysql://db/x"), "--feedback-url", "postgresql://",
                    "mysql://db/x", exc=StorageError)
    expect_one_line(lambda: open_feedback_store(workspace, "postgresql://nobody@127.0.0.1:1/none"),
                    "expected a reachable PostgreSQL", exc=StorageError)
    expect_one_line(lambda: parse_when("last tuesday", "--before"), "--before", "2025-03-01", "last tuesday",
                    exc=ConfigError)
    assert parse_when("2025-03-01") == datetime(2025, 3, 1, tzinfo=UTC)
    assert parse_when("2025-03-01T12:00:00+09:00") == datetime(2025, 3, 1, 3, tzinfo=UTC)
