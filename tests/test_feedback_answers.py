"""Feedback on written answers (POST /v1/answer): the verdicts (answer_helpful, answer_wrong, answer_no_answer) and
citation_click, checked against the query record, graded into qrels, listed as failures; worked examples whose
expected values are derived by hand in each test."""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import run_cli

from evolve.feedback import (
    FeedbackRejected,
    check_event,
    event_record,
    export_gold,
    grade_feedback,
    open_feedback_store,
    query_record,
    ubi_validator,
)
from evolve.feedback._grades import gold_query_id, query_key

_clock = iter(range(10**6))


def _ts() -> str:
    n = next(_clock)
    return f"2025-03-01T11:{n // 3600 % 60:02d}:{n // 60 % 60:02d}.{n % 60:06d}Z"


def answered(store, text, passages, cited, client="c1", refused=False):
    """A search answered by POST /v1/answer, recorded as the server records it: the hits are the packed passages'
    documents in marker order, ``query_attributes.answer.cited`` the cited documents."""
    qid = uuid.uuid4().hex
    attrs = {"config_version": "v1", "k": len(passages),
             "answer": {"cited": list(cited), "refused": refused, "grounded": bool(cited) or refused,
                        "refusal": "model" if refused else None, "removed_markers": 0, "unsupported": 0}}
    store.add_query(query_record(query_id=qid, client_id=client, user_query=text, hit_ids=passages,
                                 attributes=attrs, timestamp=_ts()))
    return qid


def unwritten(store, text, passages, value, client="c1"):
    """A search made by POST /v1/answer whose answer is still being written ({"pending": True}), failed
    ({"error": ...}) or was left by its client ({"cancelled": True})."""
    qid = uuid.uuid4().hex
    store.add_query(query_record(query_id=qid, client_id=client, user_query=text, hit_ids=passages,
                                 attributes={"config_version": "v1", "k": len(passages), "endpoint": "answer",
                                             "answer": value}, timestamp=_ts()))
    return qid


def searched(store, text, hits, client="c1"):
    qid = uuid.uuid4().hex
    store.add_query(query_record(query_id=qid, client_id=client, user_query=text, hit_ids=hits,
                                 attributes={"config_version": "v1", "k": len(hits)}, timestamp=_ts()))
    return qid


def act(store, qid, action, doc=None, client="c1", ordinal=None):
    """Store an event the way the route does: check it against its query record first."""
    checked = check_event(store.get_query(qid), action, doc, ordinal)
    store.add_event(event_record(event_id=uuid.uuid4().hex, action_name=action, query_id=qid, client_id=client,
                                 object_id=doc, ordinal=checked.ordinal, config_version="v1", extra=checked.extra,
                                 timestamp=_ts()))


@pytest.fixture
def store(workspace):
    s = open_feedback_store(workspace)
    yield s
    s.close()


HITS = ["vpn", "wifi", "leave", "printer"]  # passages [1] vpn, [2] wifi, [3] leave, [4] printer
CITED = ["wifi", "vpn"]  # the answer cites [2] and [1]


def test_check_event_accepts_what_fits_the_query_and_refuses_the_rest(store):
    qa = answered(store, "VPN 인증서 오류", HITS, CITED)
    qr = searched(store, "printer offline", ["printer", "password"])
    qp = unwritten(store, "VPN 인증서 오류", HITS, {"pending": True})
    qf = unwritten(store, "VPN 인증서 오류", HITS, {"error": "answer: the LLM at http://x/v1 is unreachable"})
    a, r, p, f = store.get_query(qa), store.get_query(qr), store.get_query(qp), store.get_query(qf)
    # accepted: ordinals by hand: a hit's rank; a citation's marker (given, else its first); 0 for verdicts
    assert check_event(a, "click", "wifi", None).ordinal == 2
    assert check_event(a, "citation_click", "vpn", 1).ordinal == 1
    assert check_event(a, "citation_click", "vpn", None).ordinal == 1
    assert check_event(a, "citation_click", "wifi", None).ordinal == 2
    for verdict in ("answer_helpful", "answer_wrong", "answer_no_answer"):
        assert check_event(a, verdict, None, None).ordinal == 0
    refused = [
        (a, "citation_click", "leave", None, "object_id: expected one of the 2 documents the answer to query "
                                             f"'{qa}' cites, got 'leave'"),
        (a, "citation_click", "wifi", 1, "position: expected 2 (the marker of 'wifi'), got 1"),
        (a, "citation_click", "vpn", 3, "position: expected 1 (the marker of 'vpn'), got 3"),
        (a, "citation_click", None, None, "object_id: expected the document for action 'citation_click', got none"),
        (a, "answer_helpful", "vpn", None, "object_id: expected none for 'answer_helpful' (it is about the whole "
                                           "answer), got 'vpn'"),
        (a, "answer_wrong", None, 2, "position: expected none for 'answer_wrong' (it has no rank), got 2"),
        (r, "answer_helpful", None, None, "query_id: expected a query answered by POST /v1/answer for "
                                          f"'answer_helpful', got '{qr}', which has no answer"),
        (r, "citation_click", "printer", None, "query_id: expected a query answered by POST /v1/answer for "
                                               f"'citation_click', got '{qr}', which has no answer"),
        (p, "answer_helpful", None, None, f"got '{qp}', whose answer is pending (not written yet)"),
        (f, "citation_click", "vpn", None, f"got '{qf}', whose answer is failed"),
        (a, "answer_helpfull", None, None, "(did you mean 'answer_helpful'?)"),
        (a, "useful", "expenses", None, "object_id: expected one of the 4 documents returned for query"),
    ]
    for query, action, doc, pos, message in refused:
        with pytest.raises(FeedbackRejected) as info:
            check_event(query, action, doc, pos)
        assert message in str(info.value) and "\n" not in str(info.value), (action, str(info.value))


def test_the_new_events_and_the_answered_query_are_valid_ubi(store):
    qa = answered(store, "VPN 인증서 오류", HITS, CITED)
    act(store, qa, "citation_click", "wifi", ordinal=2)
    for verdict in ("answer_helpful", "answer_wrong", "answer_no_answer"):
        act(store, qa, verdict)
    ev, qv = ubi_validator("event"), ubi_validator("query")
    events = store.events()
    assert [e["action_name"] for e in events] == ["citation_click", "answer_helpful", "answer_wrong",
                                                   "answer_no_answer"]
    for e in events:
        assert not list(ev.iter_errors(e)), e
    assert not list(qv.iter_errors(store.get_query(qa)))
    click = events[0]
    assert click["message_type"] == "CLICK" and click["event_attributes"]["position"] == {"ordinal": 2}
    assert click["event_attributes"]["object"]["object_id"] == "wifi"
    assert {e["message_type"] for e in events[1:]} == {"FEEDBACK"}
    assert all("object" not in e["event_attributes"] and e["event_attributes"]["position"] == {"ordinal": 0}
               for e in events[1:])


def test_a_helpful_answer_grades_its_cited_documents_2_beside_the_marks(store):
    """Per person: a mark on the document itself > the latest verdict on an answer citing it > a click.
    Across people: the mean, rounded half up. By hand:
      alice: answer_helpful                       -> vpn 2, wifi 2
      bob:   not_useful on wifi, then helpful      -> vpn 2, wifi 0 (his own mark on wifi wins)
      carol: answered on vpn, then helpful         -> vpn 3 (her mark wins), wifi 2
      dave:  helpful, then wrong                   -> nothing (his latest verdict withdraws the helpful one)
      erin:  citation_click on vpn, no verdict     -> nothing (a citation click judges nothing)
      vpn  = mean(2, 2, 3) = 2.33 -> 2;  wifi = mean(2, 0, 2) = 1.33 -> 1;  leave, printer: never cited nor marked.
    """
    text = "VPN 인증서 오류"
    q = answered(store, text, HITS, CITED, client="alice")
    act(store, q, "answer_helpful", client="alice")
    q = answered(store, text, HITS, CITED, client="bob")
    act(store, q, "not_useful", "wifi", client="bob")
    act(store, q, "answer_helpful", client="bob")
    q = answered(store, text, HITS, CITED, client="carol")
    act(store, q, "answered", "vpn", client="carol")
    act(store, q, "answer_helpful", client="carol")
    q = answered(store, text, HITS, CITED, client="dave")
    act(store, q, "answer_helpful", client="dave")
    act(store, q, "answer_wrong", client="dave")
    q = answered(store, text, HITS, CITED, client="erin")
    act(store, q, "citation_click", "vpn", client="erin", ordinal=1)
    judged = grade_feedback(store.queries(), store.events())
    key = query_key(text)
    pairs = {p.doc_id: p for p in judged.pairs if p.query == key}
    assert pairs["vpn"].client_grades == {"alice": 2, "bob": 2, "carol": 3}
    assert pairs["wifi"].client_grades == {"alice": 2, "bob": 0, "carol": 2}
    assert judged.qrels() == {key: {"vpn": 2, "wifi": 1}}
    # the evidence: each verdict counts once per cited document
    assert pairs["vpn"].events == {"answer_helpful": 4, "answer_wrong": 1, "answered": 1, "citation_click": 1}
    assert pairs["vpn"].clicks == 0  # a citation click is not a click of the result list (COEC)
    assert judged.answers == {key: 5} and judged.verdicts == {key: {"answer_helpful": 4, "answer_wrong": 1}}


def test_export_writes_the_helpful_answers_documents_as_grade_2_qrels(store, tmp_path):
    """Korean answer marked helpful by two people (vpn, wifi cited), an English list mark (printer useful), a
    refused answer marked helpful (nothing cited: nothing to grade). Expected qrels lines by hand."""
    ko = "VPN 인증서 오류"
    for client in ("alice", "bob"):
        act(store, answered(store, ko, HITS, CITED, client=client), "answer_helpful", client=client)
    act(store, searched(store, "printer offline", ["printer", "password"], client="carol"), "useful", "printer",
        client="carol")
    act(store, answered(store, "cafeteria menu", HITS, [], client="dave", refused=True), "answer_helpful",
        client="dave")
    summary = export_gold(store, tmp_path / "gold")
    qko, qen = gold_query_id(query_key(ko)), gold_query_id(query_key("printer offline"))
    assert (summary.queries, summary.judgements, summary.by_grade) == (2, 3, {2: 3})
    expected = sorted([f"{qko} 0 vpn 2", f"{qko} 0 wifi 2", f"{qen} 0 printer 2"])
    assert (tmp_path / "gold" / "qrels.trec").read_text().splitlines() == expected
    from evolve.gold import read_gold

    by_doc = {p["doc_id"]: p for p in read_gold(tmp_path / "gold").provenance[qko]}
    assert by_doc["vpn"]["events"] == {"answer_helpful": 2} and by_doc["vpn"]["clients"] == 2


def test_failures_list_wrong_and_refused_answers_beside_no_answer(store):
    """By hand: "회의실 프린터": 2 no_answer on the list; "VPN 인증서 오류": 1 wrong + 1 didn't answer, 1 refused;
    "printer offline": 1 refused; "wifi password": helpful only (no failure). Order: most failures first."""
    for _ in range(2):
        q = searched(store, "회의실 프린터", HITS, client="bob")
        act(store, q, "no_answer", client="bob")
    q = answered(store, "VPN 인증서 오류", HITS, CITED, client="alice")
    act(store, q, "answer_wrong", client="alice")
    q = answered(store, "VPN 인증서 오류", HITS, CITED, client="carol")
    act(store, q, "answer_no_answer", client="carol")
    answered(store, "VPN  인증서 오류", HITS, [], client="dave", refused=True)
    answered(store, "printer offline", HITS, [], refused=True)
    act(store, answered(store, "wifi password", HITS, ["wifi"]), "answer_helpful")
    rows = [(f.text, f.no_answer, f.wrong, f.not_answered, f.refused)
            for f in grade_feedback(store.queries(), store.events()).failures()]
    assert rows == [("VPN 인증서 오류", 0, 1, 1, 1), ("회의실 프린터", 2, 0, 0, 0), ("printer offline", 0, 0, 0, 1)]


def test_cli_stats_lists_the_answer_failures(workspace):
    store = open_feedback_store(workspace)
    q = searched(store, "회의실 프린터", HITS, client="bob")
    act(store, q, "no_answer", client="bob")
    q = answered(store, "VPN 인증서 오류", HITS, CITED, client="alice")
    act(store, q, "citation_click", "wifi", client="alice", ordinal=2)
    act(store, q, "answer_wrong", client="alice")
    answered(store, "cafeteria menu", HITS, [], client="carol", refused=True)
    unwritten(store, "cafeteria menu", HITS, {"error": "answer: the LLM timed out after 120 s"}, client="carol")
    act(store, answered(store, "printer offline", HITS, ["printer"], client="carol"), "answer_helpful",
        client="carol")
    store.close()
    ws = str(workspace.path)
    r = run_cli("feedback", "stats", "--workspace", ws)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"feedback in {workspace.path / 'feedback.sqlite'}: 5 searches by 3 clients, 4 events "
        "(answer_helpful 1, answer_wrong 1, citation_click 1, no_answer 1)",
        "answers: 3 written, 1 refused, 1 failed; marked helpful 1, wrong 1, didn't answer 0; citations opened 1",
        "failure list, 3 queries:",
        "  no_answer  wrong  didnt_answer  refused  query",
        "          0      0             0        1  cafeteria menu",
        "          0      1             0        0  VPN 인증서 오류",
        "          1      0             0        0  회의실 프린터",
    ]
    r = run_cli("feedback", "stats", "--workspace", ws, "--json", "--top", "1")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["answers"] == {"written": 3, "refused": 1, "failed": 1, "answer_helpful": 1, "answer_wrong": 1,
                               "answer_no_answer": 0, "citation_click": 1}
    assert data["failures"] == [{"query": "cafeteria menu", "no_answer": 0, "answer_wrong": 0, "answer_no_answer": 0,
                                 "refused": 1}]


def test_an_answers_sources_add_no_impressions_to_the_click_model(store):
    """COEC's CTR(rank) is about the result list: the page's answer is a record of its own whose hits are its
    sources. By hand, from the 6 list searches alone: rank 1 clicked 3 times in 6, rank 2 never, rank 3 3 in 6, so
    CTR = {1: 0.5, 2: 0.0, 3: 0.5}, and `low` (6 impressions at rank 3) has COEC 3 / (6 * 0.5) = 1.0: grade 1.
    Had the 6 answers' sources (`low` alone, at rank 1) counted, CTR(1) would be 3 / 12 = 0.25 and `low`'s
    COEC 3 / (6 * 0.5 + 6 * 0.25) = 0.67: no grade."""
    hits = ["top", "mid", "low"]
    for i in range(6):
        qid = searched(store, "q", hits, client=f"u{i}")
        act(store, qid, "click", "top" if i < 3 else "low", client=f"u{i}")
        answered(store, "q", ["low"], ["low"], client=f"u{i}")
        unwritten(store, "q", ["low"], {"error": "answer: cut off"}, client=f"u{i}")
    judged = grade_feedback(store.queries(), store.events())
    assert judged.rank_ctr == {1: 0.5, 2: 0.0, 3: 0.5}
    low = next(p for p in judged.pairs if p.doc_id == "low")
    assert (low.impressions, low.coec, low.grade) == (6, pytest.approx(1.0), 1)
