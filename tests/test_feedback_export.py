"""Events -> grades (explicit marks, COEC-weighed clicks, conflicts) -> a gold folder; stats, delete, the
interleaving sign test; the CLI's exact output."""

from __future__ import annotations

import csv
import json
import uuid

import pytest
from conftest import expect_one_line, run_cli

from evolve.feedback import (
    GradeRules,
    event_record,
    export_gold,
    grade_feedback,
    interleaving_gate,
    interleaving_results,
    open_feedback_store,
    query_record,
    sign_test,
)
from evolve.feedback._grades import gold_query_id, query_key

_clock = iter(range(10**6))


def _ts() -> str:
    n = next(_clock)
    return f"2025-03-01T10:{n // 3600 % 60:02d}:{n // 60 % 60:02d}.{n % 60:06d}Z"


def search(store, text, hits, client="c1", attrs=None):
    qid = uuid.uuid4().hex
    store.add_query(query_record(query_id=qid, client_id=client, user_query=text, hit_ids=hits,
                                 attributes=attrs or {"config_version": "v1"}, timestamp=_ts()))
    return qid


def act(store, qid, action, doc, hits, client="c1"):
    rank = hits.index(doc) + 1 if doc else 0
    store.add_event(event_record(event_id=uuid.uuid4().hex, action_name=action, query_id=qid, client_id=client,
                                 object_id=doc, ordinal=rank, config_version="v1", timestamp=_ts()))


@pytest.fixture
def store(workspace):
    s = open_feedback_store(workspace)
    yield s
    s.close()


def _grades(store, **kw):
    j = grade_feedback(store.queries(), store.events(), GradeRules(**kw))
    return {(p.query, p.doc_id): p for p in j.pairs}, j


def test_explicit_marks_grade_and_the_latest_mark_of_a_client_wins(store):
    hits = ["a", "b", "c"]
    q = search(store, "Vitamin D  fractures", hits)
    act(store, q, "useful", "a", hits)
    act(store, q, "answered", "a", hits)      # c1's latest mark on a: answered
    act(store, q, "click", "b", hits)
    act(store, q, "not_useful", "b", hits)    # c1's mark on b beats c1's click on b
    act(store, q, "useful", "c", hits)
    act(store, q, "not_useful", "c", hits)    # latest wins, even downwards
    pairs, j = _grades(store)
    key = query_key("vitamin d fractures")
    assert {d: pairs[(key, d)].grade for d in hits} == {"a": 3, "b": 0, "c": 0}
    assert j.qrels() == {key: {"a": 3, "b": 0, "c": 0}}


def test_across_clients_the_rounded_mean(store):
    hits = ["a", "b", "c"]
    for client, marks in (("c1", {"a": "answered", "b": "useful", "c": "answered"}),
                          ("c2", {"a": "useful", "b": "not_useful", "c": "not_useful"}),
                          ("c3", {"c": "not_useful"})):
        q = search(store, "same query", hits, client=client)
        for doc, action in marks.items():
            act(store, q, action, doc, hits, client=client)
    pairs, _ = _grades(store)
    key = query_key("same query")
    # a: (3 + 2) / 2 = 2.5 -> 3 (half up); b: (2 + 0) / 2 = 1; c: (3 + 0 + 0) / 3 = 1
    assert {d: pairs[(key, d)].grade for d in hits} == {"a": 3, "b": 1, "c": 1}
    assert pairs[(key, "a")].client_grades == {"c1": 3, "c2": 2}


def test_clicks_count_only_with_coec_at_least_one_and_enough_impressions(store):
    """COEC = clicks / sum of CTR(rank) over the document's impressions, CTR(rank) over every query."""
    hits = ["top", "mid", "low"]
    # 6 searches of "q": `top` (rank 1) is clicked 3 times, `low` (rank 3) 3 times, `mid` never
    for i in range(6):
        qid = search(store, "q", hits, client=f"u{i}")
        if i < 3:
            act(store, qid, "click", "top", hits, client=f"u{i}")
        else:
            act(store, qid, "click", "low", hits, client=f"u{i}")
    # another query keeps rank 1 busy: 4 searches, all clicked at rank 1
    for i in range(4):
        qid = search(store, "other", ["x", "y"], client=f"o{i}")
        act(store, qid, "click", "x", ["x", "y"], client=f"o{i}")
    pairs, j = _grades(store)
    # rank CTRs: rank 1: 7 clicks / 10 shown; rank 2: 0 / 10; rank 3: 3 / 6
    assert j.rank_ctr == {1: 0.7, 2: 0.0, 3: 0.5}
    top, low = pairs[("q", "top")], pairs[("q", "low")]
    assert top.coec == pytest.approx(3 / (6 * 0.7)) and top.grade is None  # 0.71 < 1: no judgement (not a 0)
    assert low.coec == pytest.approx(3 / (6 * 0.5)) and low.grade == 1      # 1.0: clicked as its rank predicts
    assert ("q", "mid") not in pairs                                        # never clicked nor marked
    assert pairs[("other", "x")].coec == pytest.approx(4 / (4 * 0.7)) and pairs[("other", "x")].grade is None  # 4 < 5 shown
    few, _ = _grades(store, min_impressions=4)
    assert few[("other", "x")].grade == 1


def test_export_writes_a_gold_folder_the_reader_takes(store, tmp_path):
    from evolve.gold import read_gold

    hits = ["vpn", "wifi", "leave"]
    ko = search(store, "VPN 인증서 오류", hits)
    act(store, ko, "answered", "vpn", hits)
    act(store, ko, "not_useful", "wifi", hits)
    en = search(store, "printer offline", ["printer", "password"], client="c2")
    act(store, en, "useful", "printer", ["printer", "password"], client="c2")
    dud = search(store, "nothing good", ["password"], client="c3")
    act(store, dud, "not_useful", "password", ["password"], client="c3")
    act(store, dud, "no_answer", None, ["password"], client="c3")
    store.add_query(query_record(query_id="hidden", client_id="c4", user_query="", hit_ids=["vpn"],
                                 attributes={"config_version": "v1", "query_text": "dropped"}, timestamp=_ts()))
    summary = export_gold(store, tmp_path / "gold", fmt="quepid")
    assert (summary.queries, summary.judgements, summary.by_grade) == (2, 3, {0: 1, 2: 1, 3: 1})
    assert summary.skipped_no_positive == 1 and summary.without_text == 1
    gold = read_gold(tmp_path / "gold")
    qid_ko = gold_query_id(query_key("VPN 인증서 오류"))
    assert gold.queries[qid_ko] == "VPN 인증서 오류"
    assert gold.qrels[qid_ko] == {"vpn": 3, "wifi": 0}
    assert gold.metadata[qid_ko] == {"source": "feedback", "kind": "feedback", "lang": "ko", "searches": 1, "clients": 1}
    assert gold.metadata[gold_query_id("printer offline")]["lang"] == "en"
    prov = gold.provenance[qid_ko]
    assert {p["doc_id"]: (p["grade"], p["events"]) for p in prov} == {"vpn": (3, {"answered": 1}),
                                                                       "wifi": (0, {"not_useful": 1})}
    trec = (tmp_path / "gold" / "qrels.trec").read_text().splitlines()
    assert f"{qid_ko} 0 vpn 3" in trec and len(trec) == 3
    rows = list(csv.reader((tmp_path / "gold" / "quepid.csv").open(encoding="utf-8")))
    assert rows[0] == ["query", "docid", "rating"] and ["VPN 인증서 오류", "vpn", "3"] in rows
    assert "사내" not in (tmp_path / "gold" / "gold.jsonl").read_text(encoding="utf-8")  # ids only


def test_export_with_nothing_to_export_is_one_line(store, tmp_path):
    from evolve.errors import EvolveError

    search(store, "lonely", ["a"])
    expect_one_line(lambda: export_gold(store, tmp_path / "g"), "nothing to export", "grade above 0", exc=EvolveError)
    expect_one_line(lambda: export_gold(store, tmp_path / "g", fmt="csv"), "--format", "trec, quepid", "csv",
                    exc=EvolveError)


def _interleaved(store, hits, teams, client="c1", a="champ", b="chall"):
    attrs = {"config_version": "v-" + a, "interleaving": {
        "method": "team-draft", "teams": teams,
        "champion": {"config_version": "v-" + a, "config_fingerprint": a},
        "challenger": {"config_version": "v-" + b, "config_fingerprint": b}}}
    return search(store, f"q {uuid.uuid4().hex[:6]}", hits, client=client, attrs=attrs)


def test_interleaving_credits_and_the_sign_test(store):
    hits, teams = ["d1", "d2", "d3", "d4"], ["challenger", "champion", "challenger", "champion"]
    for _ in range(9):   # challenger wins: its documents get the clicks
        q = _interleaved(store, hits, teams)
        act(store, q, "click", "d1", hits)
        act(store, q, "useful", "d3", hits)
    for _ in range(2):   # champion wins
        q = _interleaved(store, hits, teams)
        act(store, q, "click", "d2", hits)
    for _ in range(3):   # ties: nothing clicked, or one each
        q = _interleaved(store, hits, teams)
    q = _interleaved(store, hits, teams)
    act(store, q, "click", "d1", hits)
    act(store, q, "answered", "d4", hits)
    q = _interleaved(store, hits, teams)
    act(store, q, "not_useful", "d1", hits)  # a negative mark credits nobody
    [res] = interleaving_results(store.queries(), store.events())
    assert (res.wins, res.ties, res.losses) == (9, 5, 2)
    from scipy.stats import binomtest

    assert res.p_value == pytest.approx(binomtest(9, 11, 0.5, alternative="greater").pvalue)
    assert sign_test(0, 0) == 1.0
    ok, why = interleaving_gate([res], "champ", "chall", min_preferences=30)
    assert not ok and "expected at least 30 queries with a preference, got 11" in why
    ok, why = interleaving_gate([res], "champ", "chall", min_preferences=10)
    assert ok and "9 wins, 5 ties, 2 losses" in why
    ok, why = interleaving_gate([res], "champ", "other")
    assert not ok and "no interleaving of this candidate" in why


def test_cli_export_stats_delete(workspace, tmp_path):
    store = open_feedback_store(workspace)
    hits = ["vpn", "wifi"]
    q = search(store, "VPN 인증서 오류", hits, client="alice")
    act(store, q, "answered", "vpn", hits, client="alice")
    q2 = search(store, "회의실 프린터", hits, client="bob")
    act(store, q2, "no_answer", None, hits, client="bob")
    act(store, search(store, "회의실 프린터", hits, client="bob"), "no_answer", None, hits, client="bob")
    iq = _interleaved(store, ["d1", "d2"], ["challenger", "champion"], client="carol")
    act(store, iq, "click", "d1", ["d1", "d2"], client="carol")
    store.close()
    ws = str(workspace.path)
    r = run_cli("feedback", "stats", "--workspace", ws)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"feedback in {workspace.path / 'feedback.sqlite'}: 4 searches by 3 clients, 4 events "
        "(answered 1, click 1, no_answer 2)",
        "failure list, 1 queries:",
        "  no_answer  wrong  didnt_answer  refused  query",
        "          2      0             0        0  회의실 프린터",
        "interleaving: challenger v-chall vs champion v-champ: 1 wins, 0 ties, 0 losses over 1 queries "
        "(1 searches), one-sided sign test p = 0.5000",
    ]
    out = tmp_path / "gold"
    r = run_cli("feedback", "export", "--out", str(out), "--workspace", ws, "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["queries"] == 1 and summary["by_grade"] == {"3": 1}
    r = run_cli("feedback", "export", "--out", str(out), "--workspace", ws, "--since", "2025-03-02")
    assert r.returncode == 2 and r.stderr.startswith("error: nothing to export") and r.stderr.count("\n") == 1
    r = run_cli("feedback", "delete", "--client", "bob", "--workspace", ws)
    assert r.returncode == 0 and r.stdout.strip() == "deleted 2 searches and 2 events of client 'bob'"
    r = run_cli("feedback", "delete", "--before", "2025-03-02", "--workspace", ws)
    assert r.stdout.strip() == "deleted 2 searches and 2 events before 2025-03-02"  # alice's and carol's
    r = run_cli("feedback", "delete", "--workspace", ws)
    assert r.returncode == 2 and r.stderr.strip() == "error: expected exactly one of --client ID or --before DATE"
    r = run_cli("feedback", "delete", "--before", "soon", "--workspace", ws)
    assert r.returncode == 2 and "--before: expected a date like 2025-03-01" in r.stderr
