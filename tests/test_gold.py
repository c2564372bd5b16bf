"""Issue 13: --gold folders (merge/replace, stale and dangling gold), query roles by text hash, the study across
nights of growing gold, review round trips (Quepid, TREC) and `gold assess` (the minimum detectable difference).

Real parts: real SciFact documents and queries, real Optuna (SQLite) and MLflow (SQLite), BM25 through the real
pipeline. The two nights run through the CLI in this process (``evolve.cli.main``, the typer app the console
script runs) so ranx's numba compilation is paid once per session, not once per night; bad input goes through the
console script as a real subprocess.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import random
import statistics
from pathlib import Path

import pytest
from conftest import REPO, expect_one_line, run_cli

BM25_SPACE = str(REPO / "tests" / "data" / "space_bm25.yaml")


# ------------------------------------------------------------------------------------------ helpers


def _doc(i: int, text: str):
    from evolve.datasets import Document

    return Document(f"d{i}", "", text)


def _synthetic(n_train: int = 40, n_test: int = 10):
    """A small in-memory dataset with train and test qrels (one relevant document per query)."""
    from evolve.datasets import Dataset

    corpus = {f"d{i}": _doc(i, f"document number {i} about topic {i} and some words") for i in range(120)}
    queries = {f"q{i}": f"what is topic {i}?" for i in range(n_train + n_test)}
    train = {f"q{i}": {f"d{i}": 1} for i in range(n_train)}
    test = {f"q{i}": {f"d{i}": 1} for i in range(n_train, n_train + n_test)}
    return Dataset("synthetic", "/synthetic", corpus, queries, {"train": train, "test": test})


def _gold(path: Path, ids: range, *, prefix: str = "g", pinned: dict | None = None, meta: dict | None = None,
          docs_of=lambda i: {f"d{i % 120}": 2}):
    from evolve.gold import write_gold

    queries = {f"{prefix}{i}": f"how does gold topic {prefix}{i} work" for i in ids}
    qrels = {f"{prefix}{i}": docs_of(i) for i in ids}
    pins = {}
    for role, which in (pinned or {}).items():
        pins[role] = {q: qrels.pop(q) for q in which}
    return write_gold(path, queries, qrels, pinned=pins or None, metadata=meta)


def _apply(ds, *folders, mode="merge", strict=False):
    from evolve.gold import GoldSpec, apply_gold

    return apply_gold(ds, GoldSpec.parse([str(f) for f in folders], mode), strict=strict)


def _cli(*args: str) -> tuple[int, str, str]:
    """The evolve CLI in this process (see the module docstring): exit code, stdout, stderr."""
    from evolve.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


def _roles(splits) -> dict[str, str]:
    return {**{q: "tune" for q in splits.tune}, **{q: "holdout" for q in splits.holdout}}


# ------------------------------------------------------------------------------------------ roles


def test_roles_stay_put_when_gold_grows(tmp_path):
    from evolve.splits import make_splits, role_hash

    base = _synthetic()
    ds1, _ = _apply(base, _gold(tmp_path / "a", range(30)))
    first = make_splits(ds1, 7)
    assert first.scheme == "hash" and first.report == tuple(sorted(base.qrels["test"]))
    assert not set(first.report) & (set(first.tune) | set(first.holdout))
    # every role is the seeded hash of the text (the set is large enough for no top-up)
    for q, r in _roles(first).items():
        assert r == ("holdout" if role_hash(ds1.queries[q], 7) < 0.3 else "tune"), q
    ds2, _ = _apply(base, tmp_path / "a", _gold(tmp_path / "b", range(30, 90)))
    for recorded in (None, first):  # by hash alone, and as a study continues (the stored roles)
        second = make_splits(ds2, 7, recorded=recorded)
        assert {q: r for q, r in _roles(second).items() if q in _roles(first)} == _roles(first)
        assert len(_roles(second)) == len(_roles(first)) + 60
    # another seed gives other roles: the hash is seeded
    assert _roles(make_splits(ds1, 8)) != _roles(first)


def test_equal_texts_share_a_role_and_a_tuned_text_is_never_held_out(tmp_path):
    from evolve.datasets import Dataset
    from evolve.splits import QuerySplits, make_splits

    base = _synthetic()
    queries = {**base.queries, "q1": "Same Question?", "q2": "same   question?"}  # equal after normalising
    ds = Dataset(base.name, base.source, base.corpus, queries, base.qrels)
    splits = make_splits(ds, 0)
    assert ("q1" in splits.tune) == ("q2" in splits.tune) and ("q1" in splits.holdout) == ("q2" in splits.holdout)
    # a study made before hashed roles split them apart: the holdout twin leaves holdout, the tune set stays
    old = QuerySplits(0, tuple(q for q in splits.tune if q != "q2") + ("q1",),
                      tuple(q for q in splits.holdout if q != "q1") + ("q2",), splits.report, "train", "test")
    again = make_splits(ds, 0, recorded=old)
    assert "q1" in again.tune and "q2" not in again.holdout and "q2" not in again.tune
    assert "q2" in again.excluded
    assert set(again.tune) == set(old.tune)


def test_report_queries_stay_out_of_tune_and_holdout_by_text_on_scifact(scifact):
    """SciFact's train queries 871 and 1291 repeat test queries 870 and 1292 (same text, same qrels). By id alone
    (the old split) they were tuned or held out on; by normalised text they take no role."""
    from evolve.splits import make_splits, text_key

    for train_q, test_q in (("871", "870"), ("1291", "1292")):
        assert train_q in scifact.qrels["train"] and test_q in scifact.qrels["test"]
        assert text_key(scifact.queries[train_q]) == text_key(scifact.queries[test_q])
        assert scifact.qrels["train"][train_q] == scifact.qrels["test"][test_q]
    splits = make_splits(scifact, 0)
    used = set(splits.tune) | set(splits.holdout)
    assert not {"871", "1291"} & used
    assert splits.excluded == ("1291", "871")
    report_texts = {text_key(scifact.queries[q]) for q in splits.report}
    assert not [q for q in used if text_key(scifact.queries[q]) in report_texts]
    assert len(used) == len(scifact.qrels["train"]) - 2 and len(splits.report) == 300
    assert 0.25 < len(splits.holdout) / len(used) < 0.35  # the 70/30 split of train, now by hash


def test_pinned_roles_are_honoured(tmp_path, caplog):
    from evolve.splits import make_splits

    base = _synthetic()
    folder = _gold(tmp_path / "p", range(20), pinned={"holdout": ["g0", "g1", "g2"], "tune": ["g3"], "report": ["g4", "g5"]})
    ds, info = _apply(base, folder)
    assert set(ds.qrels) == {"train", "test", "gold", "gold.tune", "gold.holdout", "gold.report"}
    splits = make_splits(ds, 0)
    assert {"g0", "g1", "g2"} <= set(splits.holdout) and "g3" in splits.tune
    assert {"g4", "g5"} <= set(splits.report) and set(base.qrels["test"]) <= set(splits.report)
    assert splits.qrels(ds, "report")["g4"] == {"d4": 2}
    assert "g4" not in splits.qrels(ds, "tune") and "g4" not in splits.qrels(ds, "holdout")
    # a pin never moves a text the study already gave another role (it was tuned on): a warning says so
    pinned_tune = next(q for q in splits.tune if q.startswith("q"))
    (folder / "qrels" / "holdout.tsv").write_text("query-id\tcorpus-id\tscore\ng0\td0\t2\n")
    from evolve.gold import write_gold

    write_gold(tmp_path / "p2", {pinned_tune: ds.queries[pinned_tune]}, {}, pinned={"holdout": {pinned_tune: {"d1": 1}}})
    ds2, _ = _apply(base, folder, tmp_path / "p2")
    with caplog.at_level("WARNING", logger="evolve.splits"):
        again = make_splits(ds2, 0, recorded=splits)
    assert pinned_tune in again.tune
    assert f"query '{pinned_tune}' is pinned to holdout but the study gave it the role tune before: it stays tune" in caplog.text


def test_a_query_pinned_to_two_roles_is_one_line(tmp_path):
    from evolve.errors import DatasetError

    base = _synthetic()
    a = _gold(tmp_path / "a", range(3), pinned={"holdout": ["g0"]})
    b = _gold(tmp_path / "b", range(3), pinned={"tune": ["g0"]})
    expect_one_line(lambda: _apply(base, a, b), "query 'g0' is pinned to tune here but to holdout in an earlier folder",
                    exc=DatasetError)


def test_merge_joins_and_replace_replaces_the_datasets_qrels(tmp_path):
    from evolve.splits import make_splits

    base = _synthetic()
    folder = _gold(tmp_path / "g", range(12))
    merged, info = _apply(base, folder, mode="merge")
    assert merged.qrels["train"] == base.qrels["train"] and merged.qrels["test"] == base.qrels["test"]
    assert merged.qrels["gold"] == {f"g{i}": {f"d{i}": 2} for i in range(12)}
    assert set(merged.queries) == set(base.queries) | set(merged.qrels["gold"])
    m = make_splits(merged, 0)
    assert len(m.tune) + len(m.holdout) == 40 + 12 and len(m.report) == 10
    replaced, _ = _apply(base, folder, mode="replace")
    assert set(replaced.qrels) == {"gold"} and set(replaced.queries) == set(replaced.qrels["gold"])
    r = make_splits(replaced, 0)
    assert set(r.tune) | set(r.holdout) == set(replaced.qrels["gold"]) and r.report == ()
    assert info.fingerprint() != _apply(base, folder, mode="replace")[1].fingerprint()
    # a gold query may share an id with a dataset query only for the same text; its judgements then join
    from evolve.errors import DatasetError
    from evolve.gold import write_gold

    write_gold(tmp_path / "same", {"q0": "  What is TOPIC 0?"}, {"q0": {"d5": 1}})
    ds, _ = _apply(base, tmp_path / "same")
    assert make_splits(ds, 0).qrels(ds, "tune" if "q0" in make_splits(ds, 0).tune else "holdout")["q0"] == {"d0": 1, "d5": 1}
    write_gold(tmp_path / "other", {"q0": "another text"}, {"q0": {"d5": 1}})
    expect_one_line(lambda: _apply(base, tmp_path / "other"), "queries.jsonl:1: query 'q0' has another text here than in "
                    "the dataset (/synthetic): expected distinct query ids or the same text", exc=DatasetError)


def test_dangling_and_stale_gold_is_dropped_counted_and_warned(tmp_path):
    from evolve.errors import DatasetError

    base = _synthetic()
    meta = {
        "g0": {"doc_id": "d0", "passage": "document  number 0\nabout topic 0"},  # holds (whitespace normalised)
        "g1": {"doc_id": "d1", "passage": "a sentence the page no longer has"},  # stale: edited page
        "g2": {"doc_id": "gone", "passage": "document number 2"},  # stale: deleted page
    }
    docs = {0: {"d0": 2}, 1: {"d1": 2}, 2: {"d2": 1}, 3: {"d3": 1, "deleted-a": 1}, 4: {"deleted-a": 2, "deleted-b": 1}}
    folder = _gold(tmp_path / "g", range(6), meta=meta, docs_of=lambda i: docs.get(i, {f"d{i}": 1}))
    ds, info = _apply(base, folder)
    assert sorted(ds.qrels["gold"]) == ["g0", "g3", "g5"]
    assert ds.qrels["gold"]["g3"] == {"d3": 1}
    assert (info.dropped_stale, info.dropped_dangling) == (2, 3)
    assert info.warnings == [
        f"gold {folder}: dropped 2 stale quer(y/ies) whose quoted passage no longer occurs in its document: 'g1', 'g2'",
        f"gold {folder}: dropped 3 judgement(s) pointing at 2 unknown document(s): 'deleted-a', 'deleted-b'",
    ]
    assert ds.warnings[-2:] == info.warnings
    assert info.folders[0].n_queries == 3 and info.folders[0].dropped_stale == 2
    expect_one_line(lambda: _apply(base, folder, strict=True), "dropped 2 stale quer(y/ies)", "(--strict makes this an error)",
                    exc=DatasetError)


def test_holdout_prefers_reviewed_queries(tmp_path):
    from evolve.splits import make_splits

    base = _synthetic(n_train=0, n_test=0)
    meta = {f"g{i}": {"reviewed": True} for i in range(0, 40, 4)}  # 10 of 40 reviewed
    ds, info = _apply(base, _gold(tmp_path / "g", range(40), meta=meta), mode="replace")
    assert info.reviewed == frozenset(meta)
    splits = make_splits(ds, 0, reviewed=info.reviewed, prefer_reviewed=True)
    assert len(splits.holdout) == 12  # round(0.3 * 40)
    assert set(meta) <= set(splits.holdout)
    plain = make_splits(ds, 0)
    assert not set(meta) <= set(plain.holdout)
    # roles given once never move: a query reviewed later stays where it is
    ds2, info2 = _apply(base, _gold(tmp_path / "g2", range(40), meta={**meta, "g1": {"reviewed": True}}), mode="replace")
    again = make_splits(ds2, 0, recorded=plain, reviewed=info2.reviewed, prefer_reviewed=True)
    assert _roles(again) == _roles(plain)


def test_a_tiny_set_still_gets_two_queries_a_role(tmp_path):
    from evolve.errors import DatasetError
    from evolve.splits import make_splits

    base = _synthetic(n_train=0, n_test=0)
    ds, _ = _apply(base, _gold(tmp_path / "g", range(5)), mode="replace")
    splits = make_splits(ds, 0)
    assert len(splits.holdout) >= 2 and len(splits.tune) >= 2
    small, _ = _apply(base, _gold(tmp_path / "s", range(3)), mode="replace")
    expect_one_line(lambda: make_splits(small, 0), "have 3 judged quer(y/ies) for tune and holdout: expected at least 4",
                    exc=DatasetError)


def test_a_study_from_before_hashed_roles_keeps_its_split_and_its_leaderboard(tmp_path):
    """An old study (seeded split, qrels fingerprint in its identity, trials without gold fingerprints) continues:
    same study, same stored roles, and its old trials still compare with tonight's on the same tune gold."""
    import optuna

    from evolve.datasets import Dataset
    from evolve.search_space import load_search_space
    from evolve.splits import QuerySplits
    from evolve.study import ATTR, StudyOptions, comparable_trials, prepare_study
    from evolve.study._identity import dataset_spec
    from evolve.workspace import Workspace

    base = _synthetic()
    ds = Dataset("synthetic", str(tmp_path / "ds"), base.corpus, base.queries, base.qrels)
    space = load_search_space(BM25_SPACE)
    ws = Workspace(tmp_path / "ws").ensure()
    storage = f"sqlite:///{tmp_path / 'ws' / 'optuna.db'}"
    train = sorted(base.qrels["train"])
    rng = random.Random(0)
    rng.shuffle(train)
    old = QuerySplits(0, tuple(sorted(train[12:])), tuple(sorted(train[:12])), tuple(sorted(base.qrels["test"])), "train", "test")
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for k, v in {"search_space_hash": space.hash(), "qrels_fingerprint": ds.qrels_fingerprint(), "objectives": "ndcg@10",
                 "dataset": dataset_spec(str(tmp_path / "ds")), "subset": None, "split_seed": 0,
                 "splits": {k2: v2 for k2, v2 in old.to_dict().items() if k2 in ("seed", "tune", "holdout", "report",
                                                                               "source_split", "report_split")}}.items():
        study.set_user_attr(ATTR + k, v)
    dist = {"sparse.k1": optuna.distributions.FloatDistribution(0.5, 2.0),
            "sparse.b": optuna.distributions.FloatDistribution(0.2, 1.0)}
    study.add_trial(optuna.trial.create_trial(params={"sparse.k1": 1.0, "sparse.b": 0.5}, distributions=dist, value=0.5,
                                              user_attrs={ATTR + "corpus_fingerprint": ds.corpus_fingerprint()}))
    opts = StudyOptions(dataset_spec=str(tmp_path / "ds"), space=space, workspace=ws, study_name="s", storage_url=storage)
    _, st, splits = prepare_study(opts, ds)
    assert st.study_name == "s"
    assert splits.tune == old.tune and splits.holdout == old.holdout and splits.report == old.report
    assert st.user_attrs[ATTR + "legacy_gold_fingerprint"] == old.fingerprint(ds, "tune") == splits.fingerprint(ds, "tune")
    assert [t.number for t in comparable_trials(st, ds.corpus_fingerprint(), splits.fingerprint(ds, "tune"))] == [0]
    assert st.user_attrs[ATTR + "splits"]["scheme"] == "hash"


# ------------------------------------------------------------------------------------------ review


def _review_folder(tmp_path) -> Path:
    from evolve.gold import write_gold

    folder = write_gold(tmp_path / "gold", {"a": "What does, \"quoted\" text do?", "b": "how to reset a password", "c": "비밀번호 재설정"},
                        {"a": {"d1": 1, "d2": 0}, "b": {"d3": 2}}, pinned={"holdout": {"c": {"d4": 3}}},
                        metadata={"a": {"source": "generated", "lang": "en"}},
                        provenance=[{"query_id": "a", "model": "m", "prompt_hash": "h"}],
                        extra_files={"README.md": "kept\n"})
    return folder


def test_quepid_export_and_import_round_trip(tmp_path):
    from evolve.gold import read_gold
    from evolve.gold._review import export_gold, import_ratings

    folder = _review_folder(tmp_path)
    out = tmp_path / "review.csv"
    assert export_gold(folder, out, "quepid") == (4, 3)
    assert out.read_text(encoding="utf-8") == (
        'query,docid,rating\n"What does, ""quoted"" text do?",d1,1\n"What does, ""quoted"" text do?",d2,0\n'
        "how to reset a password,d3,2\n비밀번호 재설정,d4,3\n")
    # a reviewer changes a grade, adds a document, leaves one unrated and adds a query of her own
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    rows[2][2] = "2"  # a/d2: 0 -> 2
    rows[3][2] = ""  # b/d3: unrated, left as it was
    rows += [["how to reset a password", "d9", "1"], ["a new question", "d7", "3"]]
    with open(out, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    r = import_ratings(out, folder, reviewer="minji")
    assert (r.ratings, r.changed, r.added, r.unchanged, r.new_queries, r.reviewed) == (5, 1, 2, 2, 1, 4)
    gold = read_gold(folder)
    assert gold.qrels["a"] == {"d1": 1, "d2": 2} and gold.qrels["b"] == {"d3": 2, "d9": 1}
    assert gold.pinned["holdout"] == {"c": {"d4": 3}}  # a pinned query keeps its ratings in its role
    new = [q for q in gold.queries if q.startswith("r-")]
    assert len(new) == 1 and gold.queries[new[0]] == "a new question" and gold.qrels[new[0]] == {"d7": 3}
    assert gold.metadata[new[0]]["source"] == "imported"
    for q in ("a", "b", "c", new[0]):
        assert gold.metadata[q]["reviewed"] is True and gold.metadata[q]["reviewed_by"] == "minji"
        assert gold.metadata[q]["reviewed_at"]
    assert gold.metadata["a"]["source"] == "generated"
    recs = gold.provenance["a"]
    assert recs[0] == {"query_id": "a", "model": "m", "prompt_hash": "h"}  # earlier provenance is kept
    assert {k: recs[1][k] for k in ("event", "reviewer", "file", "format", "ratings", "changed", "added")} == {
        "event": "reviewed", "reviewer": "minji", "file": "review.csv", "format": "quepid", "ratings": 2, "changed": 1,
        "added": 0}
    assert (folder / "README.md").read_text() == "kept\n"
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".gold.")]  # no temporary left


#: cells a spreadsheet would run as a formula (OWASP's first characters), and two that merely look like ours
FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"click\")", "+1+1", "-2+3 연차", "@SUM(A1:A9)", "\tcmd|' /C calc'!A0",
            "\rcarriage", "'=quoted already", "'plain quote"]


def _formula_cells_ok(text: str) -> None:
    """No cell of the CSV starts with a formula character."""
    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), (cell, row)


def test_quepid_export_neutralises_formulas_and_import_reverses_it(tmp_path):
    """Issue 19, defect 12: what anyone typed goes into a CSV people open in a spreadsheet. Cells starting with
    ``=``, ``+``, ``-``, ``@``, tab or CR get a leading ``'`` (OWASP); ``gold import`` strips it, so a round trip
    (export, import unchanged) gives back exactly the folder's queries and judgements."""
    from evolve.gold import read_gold, write_gold
    from evolve.gold._review import export_gold, import_ratings

    queries = {f"q{i}": text for i, text in enumerate(FORMULAS)}
    qrels = {f"q{i}": {"-doc-1": 1, "=doc": 2, "plain": 0} for i in range(len(FORMULAS))}
    folder = write_gold(tmp_path / "gold", queries, qrels)
    out = tmp_path / "review.csv"
    export_gold(folder, out, "quepid")
    text = out.read_text(encoding="utf-8")
    _formula_cells_ok(text)
    rows = list(csv.reader(io.StringIO(text)))[1:]
    assert ["'=HYPERLINK(\"http://evil.example\",\"click\")", "'-doc-1", "1"] in rows
    assert ["''=quoted already", "plain", "0"] in rows and ["'plain quote", "'=doc", "2"] in rows
    r = import_ratings(out, folder, reviewer="minji")
    assert (r.ratings, r.changed, r.added, r.new_queries) == (3 * len(FORMULAS), 0, 0, 0)
    gold = read_gold(folder)
    assert gold.queries == queries and gold.qrels == qrels


def test_feedback_quepid_export_neutralises_formulas(tmp_path):
    """`feedback export --format quepid`: the same rule, and `gold import` of that CSV into the exported folder
    finds every query again (no new ``r-`` query from a quoted text)."""
    from evolve.feedback import event_record, export_gold, open_feedback_store, query_record
    from evolve.gold import read_gold
    from evolve.gold._review import import_ratings
    from evolve.workspace import Workspace

    store = open_feedback_store(Workspace(tmp_path / "ws").ensure())
    try:
        for i, text in enumerate(FORMULAS):
            store.add_query(query_record(query_id=f"s{i}", client_id="c", user_query=text, hit_ids=["=d", "d2"],
                                         attributes={"config_version": "v1"}))
            store.add_event(event_record(event_id=f"e{i}", action_name="answered", query_id=f"s{i}", client_id="c",
                                         object_id="=d", ordinal=1, config_version="v1"))
        export_gold(store, tmp_path / "fb", fmt="quepid")
    finally:
        store.close()
    csv_text = (tmp_path / "fb" / "quepid.csv").read_text(encoding="utf-8")
    _formula_cells_ok(csv_text)
    before = read_gold(tmp_path / "fb")
    r = import_ratings(tmp_path / "fb" / "quepid.csv", tmp_path / "fb", reviewer="jun")
    assert r.new_queries == 0 and r.changed == 0 and r.ratings == len(before.queries)
    after = read_gold(tmp_path / "fb")
    assert after.queries == before.queries and after.qrels == before.qrels
    assert {t.strip() for t in before.queries.values()} == {t.strip() for t in FORMULAS}


def test_trec_export_and_import_round_trip(tmp_path):
    from evolve.errors import DatasetError
    from evolve.gold import read_gold
    from evolve.gold._review import export_gold, import_ratings

    folder = _review_folder(tmp_path)
    before = read_gold(folder).all_qrels()
    out = tmp_path / "review.qrels"
    export_gold(folder, out, "trec")
    assert out.read_text() == "a 0 d1 1\na 0 d2 0\nb 0 d3 2\nc 0 d4 3\n"
    r = import_ratings(out, folder, reviewer="jun")
    assert (r.ratings, r.changed, r.added, r.unchanged, r.new_queries, r.reviewed) == (4, 0, 0, 4, 0, 3)
    assert read_gold(folder).all_qrels() == before
    assert read_gold(folder).metadata["b"]["reviewed_by"] == "jun"
    out.write_text("a 0 d1 1\nzz 0 d1 1\n")
    expect_one_line(lambda: import_ratings(out, folder), f"{out}:2: query 'zz' is not in the gold folder", exc=DatasetError)
    out.write_text("a 0 d1 high\n")
    expect_one_line(lambda: import_ratings(out, folder), f"{out}:1: expected a rating that is a whole number >= 0, got 'high'",
                    exc=DatasetError)
    assert read_gold(folder).all_qrels() == before  # a bad file changes nothing


def test_gold_cli_export_and_import(tmp_path):
    folder = _review_folder(tmp_path)
    out = tmp_path / "r.csv"
    rc, stdout, stderr = _cli("gold", "export", "--gold", str(folder), "--out", str(out), "--format", "quepid")
    assert rc == 0, stderr
    assert stdout.strip() == f"wrote 4 judgement(s) of 3 quer(y/ies) to {out} (quepid)"
    rc, stdout, stderr = _cli("gold", "import", str(out), "--gold", str(folder), "--reviewer", "minji")
    assert rc == 0, stderr
    assert stdout.strip() == (f"imported 4 rating(s) into {folder}: 0 changed, 0 added, 4 unchanged, 0 new quer(y/ies); "
                              "3 quer(y/ies) marked reviewed by minji")
    rc, stdout, stderr = _cli("gold", "export", "--gold", str(folder), "--out", str(out), "--format", "quepdi")
    assert rc == 2
    assert stderr.strip() == "error: --format: expected one of quepid, trec, got 'quepdi' (did you mean 'quepid'?)"


# ------------------------------------------------------------------------------------------ bad input (CLI)


def test_a_malformed_gold_line_is_one_line_exit_2(tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "queries.jsonl").write_text('{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n')
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\na\td1\t1\n")
    res = run_cli("gold", "assess", "--gold", str(folder), "--workspace", str(tmp_path / "ws"))
    assert res.returncode == 2
    assert res.stderr.strip() == (f"error: {folder / 'queries.jsonl'}:2: expected one JSON object per line, got malformed "
                                  "JSON (Expecting value)")


def test_a_qrels_line_naming_an_unknown_query_is_one_line_exit_2(tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "queries.jsonl").write_text('{"_id": "a", "text": "x"}\n')
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\na\td1\t1\nzz\td2\t1\n")
    res = run_cli("gold", "export", "--gold", str(folder), "--out", str(tmp_path / "x.csv"))
    assert res.returncode == 2
    assert res.stderr.strip() == (f"error: {folder / 'qrels.tsv'}:3: qrels name query 'zz', which queries.jsonl does not "
                                  "hold: expected every judged query in queries.jsonl")


def test_an_unknown_gold_mode_is_one_line_exit_2(tmp_path):
    res = run_cli("run", "--workspace", str(tmp_path / "ws"), "--dataset", "scifact", "--trials", "1",
                  "--gold", str(tmp_path), "--gold-mode", "mrege")
    assert res.returncode == 2
    assert res.stderr.strip() == "error: --gold-mode: expected one of merge, replace, got 'mrege' (did you mean 'merge'?)"


# ------------------------------------------------------------------------------------------ power


def test_mde_formula_against_a_hand_computation():
    from evolve.gold._power import MDE_WARN, Power, min_detectable, min_queries, size_warning, z_factor

    assert z_factor() == pytest.approx(1.644854 + 0.841621, abs=1e-5)
    diffs = [0.1, -0.05, 0.2, 0.0, 0.3, -0.1, 0.05, 0.15]
    sd = statistics.stdev(diffs)
    assert min_detectable(sd, 50) == pytest.approx((1.6448536 + 0.8416212) * sd / 50 ** 0.5)
    assert min_queries(0.05) == 5  # 2**-5 = 0.031 <= 0.05 < 2**-4
    assert size_warning(Power(7, None, "")) == (
        "warning: 7 holdout quer(y/ies): too few queries to promote anything (a paired test needs at least 5 to reach "
        "p <= 0.05 at all, and 8 to allow a single loss); add gold")  # 7 of 8 wins: p = 9/256 = 0.035
    big = Power(30, 0.2, "x", paired=True)  # 2.4865 * 0.2 / sqrt(30) = 0.0908
    assert big.mde == pytest.approx(0.09079, abs=1e-4) and big.mde > MDE_WARN
    assert size_warning(big) == (
        "warning: 30 holdout queries detect only nDCG@10 gains of 0.091 or more (MDE at alpha 0.05, power 0.8): too few "
        "queries to promote anything but a gain above 0.05; add gold")
    assert size_warning(Power(400, 0.2, "x", paired=True)) is None  # MDE 0.0249
    assert size_warning(Power(30, 0.2, "x")) is None  # the sd of scores, not of differences: a bound only if rho is high
    # promote-config passes its look's level: 30 queries at 0.005 need z(0.995) = 2.5758, MDE (2.5758 + 0.8416) *
    # 0.2 / sqrt(30) = 0.1248
    at_look = Power(30, 0.2, "x", alpha=0.005, paired=True)
    assert at_look.mde == pytest.approx(0.12478, abs=1e-4)
    assert size_warning(at_look).startswith("warning: 30 holdout queries detect only nDCG@10 gains of 0.125 or more "
                                            "(MDE at alpha 0.005, power 0.8)")


def test_assess_without_a_corpus_reports_the_folder(tmp_path):
    from evolve.splits import role_hash

    meta = {f"g{i}": {"kind": ["factual", "how-to", "conceptual"][i % 3], "lang": "ko" if i < 3 else "en",
                      "overlap": [0.1, 0.3, 0.5, 0.9][i % 4], **({"reviewed": True} if i < 2 else {}),
                      **({"judged": True} if i < 6 else {})} for i in range(12)}
    folder = _gold(tmp_path / "g", range(12), meta=meta)
    texts = [f"how does gold topic g{i} work" for i in range(12)]
    n_hold = sum(role_hash(t, 0) < 0.3 for t in texts)
    rc, stdout, stderr = _cli("gold", "assess", "--gold", str(folder), "--workspace", str(tmp_path / "ws"))
    assert rc == 0, stderr
    assert stdout.splitlines() == [
        f"gold: 12 quer(y/ies) in 1 folder(s): {folder}",
        "kinds: conceptual 4 (33.3%), factual 4 (33.3%), how-to 4 (33.3%)",
        "languages: en 9 (75.0%), ko 3 (25.0%)",
        "overlap with the source passage (12 queries): min 0.100, p25 0.250, median 0.400, p75 0.600, max 0.900, mean 0.450",
        "overlap histogram: [0.0, 0.2) 3 | [0.2, 0.4) 3 | [0.4, 0.6) 3 | [0.6, 0.8) 0 | [0.8, 1.0] 3",
        "reviewed: 2 of 12 (16.7%); judged: 6 of 12 (50.0%)",
        "MDE = (z(1-alpha) + z(1-beta)) * sd / sqrt(n), alpha 0.05 one-sided, power 0.8: 2.4865 * sd / sqrt(n)",
        f"minimum detectable nDCG@10 difference: unknown (n = {n_hold} holdout queries; sd: needs --dataset (or a study) "
        "to score the champion)",
        f"warning: {n_hold} holdout quer(y/ies): too few queries to promote anything (a paired test needs at least 5 to "
        "reach p <= 0.05 at all, and 8 to allow a single loss); add gold",
    ]


# ------------------------------------------------------------------------------------------ two nights (CLI)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, scifact):
    """A tiny SciFact: 20 test and 30 train queries, their documents and fillers (150 documents), two gold folders
    of other SciFact train queries (16, then 10 more) quoting a passage of their documents, and a BM25 champion."""
    from evolve.gold import write_gold

    root = tmp_path_factory.mktemp("tiny")
    test = sorted(scifact.qrels["test"])[:20]
    train = sorted(scifact.qrels["train"])
    own, g1, g2 = train[:30], train[30:46], train[46:56]
    docs = sorted({d for q in test for d in scifact.qrels["test"][q]} | {d for q in train[:56] for d in scifact.qrels["train"][q]})
    rest = sorted(set(scifact.corpus) - set(docs))
    random.Random(0).shuffle(rest)
    docs += rest[: 150 - len(docs)]
    ds = root / "tiny"
    (ds / "qrels").mkdir(parents=True)
    (ds / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": scifact.corpus[d].title,
                                                         "text": scifact.corpus[d].text}) + "\n" for d in docs))
    (ds / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": scifact.queries[q]}) + "\n" for q in test + own))
    for name, qs in (("test", test), ("train", own)):
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{r}" for q in qs for d, r in scifact.qrels[name][q].items()]
        (ds / "qrels" / f"{name}.tsv").write_text("\n".join(lines) + "\n")

    def gold(path, qs, extra):
        meta = {}
        for i, q in enumerate(qs):
            doc = sorted(scifact.qrels["train"][q])[0]
            meta[f"g{q}"] = {"source": "generated", "lang": "en", "kind": "factual" if i % 2 else "how-to",
                             "doc_id": doc, "passage": scifact.corpus[doc].text[:80], **extra(i)}
        write_gold(path, {f"g{q}": scifact.queries[q] for q in qs}, {f"g{q}": scifact.qrels["train"][q] for q in qs},
                   metadata=meta)
        return str(path)

    from evolve.config import config_to_yaml
    from evolve.search_space import load_search_space

    (root / "ws").mkdir()  # a team that promoted BM25 (k1 0.9, b 0.4) before
    (root / "ws" / "champion.yaml").write_text(config_to_yaml(load_search_space(BM25_SPACE).start_config()))
    return {
        "dataset": str(ds),
        "g1": gold(root / "g1", g1, lambda i: {}),
        "g2": gold(root / "g2", g2, lambda i: {"overlap": round(0.1 * i, 2), **({"reviewed": True} if i < 4 else {})}),
        "ws": root / "ws",
    }


def _night(tiny, *args):
    return _cli("run", "--workspace", str(tiny["ws"]), "--study", "s", "--dataset", tiny["dataset"],
                "--search-space", BM25_SPACE, "--report-top", "0", *args)


@pytest.fixture(scope="module")
def nights(tiny):
    """Night 1 on gold g1 (3 trials); night 2 on g1 and g2 (2 trials: the champion again, then one more)."""
    import optuna

    rc, out, err = _night(tiny, "--gold", tiny["g1"], "--trials", "3", "--seed", "1")
    assert rc == 0, err
    storage = f"sqlite:///{tiny['ws'] / 'optuna.db'}"
    first = optuna.load_study(study_name="s", storage=storage).user_attrs
    rc, out2, err2 = _night(tiny, "--gold", tiny["g1"], "--gold", tiny["g2"], "--trials", "2", "--seed", "2")
    assert rc == 0, err2
    return {"first": first, "study": optuna.load_study(study_name="s", storage=storage), "out": (out, out2), "err": (err, err2)}


@pytest.mark.slow
def test_a_second_night_with_more_gold_continues_the_same_study(tiny, nights):
    import optuna

    from evolve.splits import QuerySplits

    names = [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{tiny['ws'] / 'optuna.db'}")]
    assert names == ["s"]
    st = nights["study"]
    assert st.user_attrs["evolve.gold"] == {"folders": [tiny["g1"], tiny["g2"]], "mode": "merge"}
    assert len([t for t in st.trials if "evolve.repeat_of" not in t.user_attrs]) == 5  # repeats never count
    before, after = QuerySplits.from_dict(nights["first"]["evolve.splits"]), QuerySplits.from_dict(st.user_attrs["evolve.splits"])
    old = _roles(before)
    assert {q: r for q, r in _roles(after).items() if q in old} == old
    from evolve.gold import read_gold

    assert set(_roles(after)) - set(old) == set(read_gold(tiny["g2"]).queries)
    assert after.report == before.report and len(after.report) == 20  # gold never joins the report role


@pytest.mark.slow
def test_trials_carry_the_gold_fingerprint_and_the_leaderboard_compares_only_them(tiny, nights):
    from evolve.cli._common import load_study_view
    from evolve.leaderboard import leaderboard_frame
    from evolve.study import best_trial_info, champion_config
    from evolve.workspace import Workspace

    st = nights["study"]
    ws = Workspace(tiny["ws"])
    view = load_study_view(ws, "s", None)
    then = load_study_view(ws, "s", None, gold=[tiny["g1"]])  # tonight's roles, last night's gold: the same tune set
    fps = [t.user_attrs["evolve.gold_fingerprint"] for t in st.trials]
    assert fps == [then.gold_fp] * 3 + [view.gold_fp] * 2 and then.gold_fp != view.gold_fp
    # the champion was re-evaluated first on the grown gold, so the leaderboard refills
    from evolve.search_space import load_search_space

    params = load_search_space(BM25_SPACE).params_of(champion_config(ws, load_search_space(BM25_SPACE)))
    assert st.trials[3].params == params and st.trials[3].user_attrs.get("evolve.champion") is True
    frame = leaderboard_frame(st, view.corpus_fp, gold_fp=view.gold_fp)
    assert sorted(frame["trial"]) == [3, 4]
    assert sorted(leaderboard_frame(st, view.corpus_fp)["trial"]) == [0, 1, 2, 3, 4]  # without gold: every trial
    assert best_trial_info(st, view.corpus_fp, view.gold_fp)["number"] in (3, 4)
    rc, out, err = _cli("status", "--workspace", str(tiny["ws"]), "--json")
    assert rc == 0, err
    status = json.loads(out.strip().splitlines()[-1])
    assert sorted(r["trial"] for r in status["leaderboard"]) == [3, 4]
    assert status["gold"] == {"folders": [tiny["g1"], tiny["g2"]], "mode": "merge", "n_queries": 26,
                              "tune_fingerprint": view.gold_fp}


@pytest.mark.slow
def test_mlflow_records_where_the_gold_came_from(tiny, nights):
    from mlflow.tracking import MlflowClient

    from evolve.gold import read_gold

    client = MlflowClient(tracking_uri=f"sqlite:///{tiny['ws'] / 'mlflow.db'}")
    exp = client.get_experiment_by_name("s")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = sorted((r for r in runs if "mlflow.parentRunId" not in r.data.tags), key=lambda r: r.info.start_time)
    assert len(parents) == 2
    p = parents[1].data
    assert {k: p.params[k] for k in ("gold_mode", "gold_folders", "n_gold_queries", "n_gold_generated", "n_gold_judged",
                                     "n_gold_reviewed", "n_gold_feedback", "n_gold_dropped_stale",
                                     "n_gold_dropped_dangling")} == {
        "gold_mode": "merge", "gold_folders": "2", "n_gold_queries": "26", "n_gold_generated": "26", "n_gold_judged": "0",
        "n_gold_reviewed": "4", "n_gold_feedback": "0", "n_gold_dropped_stale": "0", "n_gold_dropped_dangling": "0"}
    for i, key in enumerate(("g1", "g2")):
        assert p.tags[f"gold.{i}.path"] == tiny[key]
        assert p.tags[f"gold.{i}.fingerprint"] == read_gold(tiny[key]).fingerprint()
    assert parents[0].data.params["gold_folders"] == "1"
    by_number = {t.number: t for t in nights["study"].trials}
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 5
    for r in children:
        trial = by_number[int(r.data.tags["optuna_trial_number"])]
        assert r.data.tags["gold_fingerprint"] == trial.user_attrs["evolve.gold_fingerprint"]
    assert p.tags["gold_fingerprint"] == by_number[4].user_attrs["evolve.gold_fingerprint"]


def _per_query(ws: Path, number: int) -> dict[str, float]:
    header, *rows = (ws / "runs" / "s" / f"trial-{number:05d}" / "per_query.tsv").read_text().splitlines()
    i = header.split("\t").index("ndcg@10")
    return {r.split("\t")[0]: float(r.split("\t")[i]) for r in rows}


@pytest.mark.slow
def test_assess_and_promote_config_say_the_gold_is_too_small(tiny, nights):
    st = nights["study"]
    ws = tiny["ws"]
    champ, rival = 3, 4  # tonight's champion (re-evaluated first) and the one other trial on this gold
    a, b = _per_query(ws, champ), _per_query(ws, rival)
    sd = statistics.stdev([b[q] - a[q] for q in sorted(a)])
    holdout = len(st.user_attrs["evolve.splits"]["holdout"])
    mde = (1.6448536269514722 + 0.8416212335729143) * sd / holdout ** 0.5
    warning = (f"warning: {holdout} holdout queries detect only nDCG@10 gains of {mde:.3f} or more (MDE at alpha 0.05, "
               "power 0.8): too few queries to promote anything but a gain above 0.05; add gold")
    rc, out, err = _cli("gold", "assess", "--gold", tiny["g1"], "--gold", tiny["g2"], "--workspace", str(ws))
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == f"gold: 26 quer(y/ies) in 2 folder(s): {tiny['g1']}, {tiny['g2']}"
    assert lines[1:3] == ["kinds: factual 13 (50.0%), how-to 13 (50.0%)", "languages: en 26 (100.0%)"]
    assert lines[3] == ("overlap with the source passage (10 queries): min 0.000, p25 0.225, median 0.450, p75 0.675, "
                        "max 0.900, mean 0.450")
    assert lines[5] == "reviewed: 4 of 26 (15.4%); judged: 0 of 26 (0.0%)"
    assert lines[6] == "dropped on load: 0 stale quer(y/ies), 0 dangling judgement(s)"
    assert lines[7] == (f"roles (split seed 0, holdout fraction 0.3): tune {len(st.user_attrs['evolve.splits']['tune'])}, "
                        f"holdout {holdout}, report 20, kept out (same text as a report query) 0")
    assert lines[8] == "MDE = (z(1-alpha) + z(1-beta)) * sd / sqrt(n), alpha 0.05 one-sided, power 0.8: 2.4865 * sd / sqrt(n)"
    assert lines[9] == (f"minimum detectable nDCG@10 difference: {mde:.4f} (n = {holdout} holdout queries, sd = {sd:.4f}: "
                        f"per-query nDCG@10 differences, trial {champ} (champion) vs trial {rival} (strongest rival), "
                        f"{len(a)} tune queries)")
    assert lines[10:] == [warning]
    # promote-config warns at the level its next look is tested at (issue 19): look 1 of this workspace, 0.05/102
    from statistics import NormalDist

    assert not (ws / "holdout_looks.jsonl").exists()  # no look yet: the next is look 1, at 0.05 * 1/102
    if holdout < 15:  # 16/2**15 = 0.000488 <= 0.00049 < 15/2**14; 2**-11 = 0.000488: at least 11 to pass at all
        at_look = (f"warning: {holdout} holdout quer(y/ies): too few queries to promote anything (a paired test needs "
                   "at least 11 to reach p <= 0.00049 at all, and 15 to allow a single loss); add gold")
    else:
        mde_look = (NormalDist().inv_cdf(1 - 0.05 / 102) + 0.8416212335729143) * sd / holdout ** 0.5
        at_look = (f"warning: {holdout} holdout queries detect only nDCG@10 gains of {mde_look:.3f} or more (MDE at "
                   "alpha 0.00049, power 0.8): too few queries to promote anything but a gain above 0.05; add gold")
    rc, out, err = _cli("promote-config", "--best", "--dry-run", "--workspace", str(ws))
    assert rc == 0, err
    assert at_look in err.splitlines()
    assert "dry run: nothing written" in out or "nothing to promote" in out


def test_the_pruner_compares_with_the_best_trial_on_the_same_gold():
    """Once gold grows, step i of an older trial is another query: the Wilcoxon pruner must compare with the best
    trial on this trial's corpus and gold, not the study's best overall."""
    import optuna

    from evolve.study._pruner import ComparableWilcoxonPruner

    study = optuna.create_study(direction="maximize", storage=optuna.storages.InMemoryStorage())
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}

    def trial(gold, value, per_step):
        return optuna.trial.create_trial(
            params={"x": 0.5}, distributions=dist, value=value,
            intermediate_values={i: per_step for i in range(30)},
            user_attrs={"evolve.corpus_fingerprint": "c", "evolve.gold_fingerprint": gold})

    study.add_trial(trial("old", 0.9, 0.9))
    study.add_trial(trial("new", 0.5, 0.5))
    current = trial("new", 0.55, 0.55)
    inner = optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=20)
    assert inner.prune(study, current) is True  # against the old gold's best: pruned
    assert ComparableWilcoxonPruner(p_threshold=0.1, n_startup_steps=20).prune(study, current) is False  # against the best on its own gold: kept
    worse = trial("new", 0.3, 0.3)
    assert ComparableWilcoxonPruner(p_threshold=0.1, n_startup_steps=20).prune(study, worse) is True


@pytest.mark.slow
def test_eval_scores_the_gold_split(tiny):
    rc, out, err = _cli("eval", "--dataset", tiny["dataset"], "--gold", tiny["g1"], "--gold-mode", "replace",
                        "--set", "retrieval.mode=sparse", "--no-cache", "--json", "--workspace", str(tiny["ws"]))
    assert rc == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["split"] == "gold" and summary["n_queries"] == 16
    rc, out, err = _cli("eval", "--dataset", tiny["dataset"], "--gold", tiny["g1"], "--set", "retrieval.mode=sparse",
                        "--no-cache", "--json", "--workspace", str(tiny["ws"]))
    assert rc == 0, err
    assert json.loads(out.strip().splitlines()[-1])["n_queries"] == 20  # merge: the dataset's own test split
