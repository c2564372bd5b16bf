"""Issue 2: dataset loaders, validation errors and warnings, fingerprints, splits, the shipped and shared sets."""

from __future__ import annotations

import gzip
import json
import unicodedata
from pathlib import Path

import pytest
from conftest import expect_one_line, shared_dataset

from evolve.datasets import Document, load_beir, load_dataset, load_folder, load_squad
from evolve.errors import DatasetError

CORPUS = [
    {"_id": "d1", "title": "Alpha", "text": "alpha text"},
    {"_id": "d2", "title": "", "text": "beta text"},
    {"_id": "d3", "text": "gamma text"},
]
QUERIES = [{"_id": "q1", "text": "what is alpha"}, {"_id": "q2", "text": "what is beta"}]


def _jsonl(path: Path, rows, *, gz: bool = False) -> Path:
    return _write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), gz=gz)


def _write(path: Path, text: str, *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def beir(tmp_path: Path, *, corpus=CORPUS, queries=QUERIES, qrels: dict[str, str] | None = None, gz=False,
         single_qrels: str | None = None) -> Path:
    folder = tmp_path / "beir"
    folder.mkdir(parents=True, exist_ok=True)
    _jsonl(folder / "corpus.jsonl", corpus, gz=gz)
    _jsonl(folder / "queries.jsonl", queries, gz=gz)
    if single_qrels is not None:
        _write(folder / "qrels.tsv", single_qrels)
    else:
        qrels = qrels if qrels is not None else {"test": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\n"}
        for split, text in qrels.items():
            _write(folder / "qrels" / f"{split}.tsv", text, gz=gz)
    return folder


def expect_error(fn, *parts: str) -> str:
    return expect_one_line(fn, *parts, exc=DatasetError)


# ----------------------------------------------------------------------------- BEIR


@pytest.mark.parametrize("gz", [False, True])
def test_beir_folder_plain_and_gz(tmp_path, gz):
    folder = beir(tmp_path, gz=gz, qrels={"test": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\n",
                                          "dev": "q1\td3\t1\n"})
    ds = load_dataset(folder)
    assert ds.name == "beir"
    assert ds.splits == ["dev", "test"]
    assert ds.corpus["d1"] == Document("d1", "Alpha", "alpha text")
    assert ds.corpus["d1"].full_text == "Alpha alpha text"
    assert ds.corpus["d2"].full_text == "beta text"
    assert ds.corpus["d3"] == Document("d3", "", "gamma text")
    assert ds.queries == {"q1": "what is alpha", "q2": "what is beta"}
    assert ds.qrels == {"test": {"q1": {"d1": 1}, "q2": {"d2": 2}}, "dev": {"q1": {"d3": 1}}}
    assert ds.warnings == []


def test_beir_single_qrels_file_is_test_split(tmp_path):
    ds = load_beir(beir(tmp_path, single_qrels="q1 0 d1 1\nq2 0 d2 1\n"))  # TREC format
    assert ds.splits == ["test"]
    assert ds.split_qrels("test") == {"q1": {"d1": 1}, "q2": {"d2": 1}}


def test_beir_integral_float_relevance_is_accepted(tmp_path):
    ds = load_beir(beir(tmp_path, qrels={"test": "q1\td1\t1.0\nq2\td2\t2\n"}))
    assert ds.qrels["test"] == {"q1": {"d1": 1}, "q2": {"d2": 2}}


def test_nfd_korean_loads_as_nfc(tmp_path):
    nfc_text = "한국어 문서입니다"
    nfd_text = unicodedata.normalize("NFD", nfc_text)
    assert nfd_text != nfc_text
    nfd_id = unicodedata.normalize("NFD", "문서1")
    folder = beir(
        tmp_path,
        corpus=[{"_id": nfd_id, "title": unicodedata.normalize("NFD", "제목"), "text": nfd_text}],
        queries=[{"_id": "q1", "text": unicodedata.normalize("NFD", "질문")}],
        qrels={"test": f"q1\t{nfd_id}\t1\n"},
    )
    ds = load_dataset(folder)
    assert list(ds.corpus) == ["문서1"]
    doc = ds.corpus["문서1"]
    assert doc.text == nfc_text and doc.title == "제목"
    assert ds.queries["q1"] == "질문"
    assert ds.qrels["test"] == {"q1": {"문서1": 1}}


# ----------------------------------------------------------------------------- plain folder


def test_plain_folder_md_txt_with_queries_jsonl(tmp_path):
    folder = tmp_path / "notes"
    _write(folder / "docs" / "intro.md", "# Getting started\n\nInstall the tool.\n")
    _write(folder / "docs" / "sub" / "faq.txt", "  Plain text answer.  \n")
    _write(folder / "docs" / "nohead.md", "No heading here.\n# Not a title\n")
    _jsonl(folder / "queries.jsonl", [{"_id": "q1", "text": "how to install"}, {"_id": "q2", "text": "faq"}])
    _write(folder / "qrels.tsv", "query-id\tcorpus-id\tscore\nq1\tintro\t1\nq2\tsub/faq\t1\n")
    ds = load_dataset(folder)
    assert sorted(ds.corpus) == ["intro", "nohead", "sub/faq"]
    assert ds.corpus["intro"] == Document("intro", "Getting started", "Install the tool.")
    assert ds.corpus["sub/faq"] == Document("sub/faq", "", "Plain text answer.")
    assert ds.corpus["nohead"] == Document("nohead", "", "No heading here.\n# Not a title")
    assert ds.splits == ["test"]
    assert ds.qrels["test"] == {"q1": {"intro": 1}, "q2": {"sub/faq": 1}}


def test_plain_folder_flat_with_queries_tsv_and_split_qrels(tmp_path):
    folder = tmp_path / "flat"
    _write(folder / "a.txt", "first document")
    _write(folder / "b.md", "# B\nsecond document")
    _write(folder / "README.md", "not a document")
    _write(folder / "queries.tsv", "q1\tfirst?\nq2\tsecond?\n")
    _write(folder / "qrels" / "dev.tsv", "q1\ta\t1\n")
    _write(folder / "qrels" / "test.tsv", "q2\tb\t1\n")
    ds = load_folder(folder)
    assert sorted(ds.corpus) == ["a", "b"]
    assert ds.corpus["b"].title == "B"
    assert ds.queries == {"q1": "first?", "q2": "second?"}
    assert ds.qrels == {"dev": {"q1": {"a": 1}}, "test": {"q2": {"b": 1}}}


def test_plain_folder_errors(tmp_path):
    folder = tmp_path / "f"
    _write(folder / "docs" / "a.md", "x")
    _write(folder / "docs" / "a.txt", "y")
    _write(folder / "queries.tsv", "q1\tx\n")
    _write(folder / "qrels.tsv", "q1\ta\t1\n")
    expect_error(lambda: load_folder(folder), "duplicate document id 'a'", "a.txt")
    (folder / "docs" / "a.txt").unlink()
    _write(folder / "queries.tsv", "q1\tx\nq2 without tab\n")
    expect_error(lambda: load_folder(folder), f"{folder / 'queries.tsv'}:2:", "without a tab")
    _write(folder / "queries.tsv", "q1\tx\nq1\ty\n")
    expect_error(lambda: load_folder(folder), f"{folder / 'queries.tsv'}:2:", "duplicate query id 'q1'", "line 1")
    (folder / "queries.tsv").unlink()
    expect_error(lambda: load_folder(folder), "expected queries.jsonl or queries.tsv")


# ----------------------------------------------------------------------------- SQuAD


def test_squad_json(tmp_path):
    data = {
        "version": "1",
        "data": [
            {
                "title": "Art",
                "paragraphs": [
                    {"context": "Paragraph zero.", "qas": [{"id": "100-0-0", "question": "q zero?"},
                                                          {"id": "100-0-1", "question": "q zero b?"}]},
                    {"context": "No questions here.", "qas": []},
                    {"context": "Paragraph two.", "qas": [{"id": "100-2-0", "question": "q two?"}]},
                    {"context": "Paragraph zero.", "qas": [{"id": "100-3-0", "question": "dup para?"}]},
                ],
            },
            {"title": "Other", "paragraphs": [{"context": "Paragraph zero.", "qas": [{"id": "q-x", "question": "other?"}]},
                                              {"context": "Plain ids.", "qas": [{"id": "plain", "question": "p?"}]}]},
        ],
    }
    path = tmp_path / "mini-squad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    ds = load_dataset(path)
    assert ds.name == "mini-squad"
    # paragraph 1 (no questions) dropped; paragraph 3 merged into 0; same text under another title is its own doc;
    # an id without '-' falls back to the article index
    assert ds.corpus == {
        "100-0": Document("100-0", "Art", "Paragraph zero."),
        "100-2": Document("100-2", "Art", "Paragraph two."),
        "q-0": Document("q-0", "Other", "Paragraph zero."),
        "1-1": Document("1-1", "Other", "Plain ids."),
    }
    assert ds.splits == ["test"]
    assert ds.qrels["test"] == {
        "100-0-0": {"100-0": 1}, "100-0-1": {"100-0": 1}, "100-2-0": {"100-2": 1}, "100-3-0": {"100-0": 1},
        "q-x": {"q-0": 1}, "plain": {"1-1": 1},
    }
    assert ds.queries["100-3-0"] == "dup para?"
    assert load_squad(path).fingerprint == ds.fingerprint


def test_squad_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [\n  {"title": "x",,}\n]}')
    expect_error(lambda: load_dataset(bad), f"{bad}:2:", "malformed JSON")
    bad.write_text('{"nodata": 1}')
    expect_error(lambda: load_dataset(bad), str(bad), "top-level 'data' list")
    bad.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [
        {"context": "c", "qas": [{"id": "a-1", "question": "?"}, {"id": "a-1", "question": "again?"}]}]}]}))
    expect_error(lambda: load_dataset(bad), str(bad), "duplicate question id 'a-1'")


# ----------------------------------------------------------------------------- validation errors


def _corpus_lines(tmp_path, lines: list[str]) -> Path:
    folder = beir(tmp_path)
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_malformed_json_line(tmp_path):
    folder = _corpus_lines(tmp_path, ['{"_id": "d1", "text": "a"}', '{"_id": "d2", "text": '])
    expect_error(lambda: load_dataset(folder), f"{folder / 'corpus.jsonl'}:2:", "malformed JSON")


def test_malformed_json_line_in_gz(tmp_path):
    folder = beir(tmp_path, gz=True)
    with gzip.open(folder / "queries.jsonl.gz", "wt") as fh:
        fh.write('{"_id": "q1", "text": "x"}\n\n{oops}\n')
    expect_error(lambda: load_dataset(folder), f"{folder / 'queries.jsonl.gz'}:3:", "malformed JSON")


def test_non_object_line(tmp_path):
    folder = _corpus_lines(tmp_path, ['{"_id": "d1", "text": "a"}', '["d2", "b"]'])
    expect_error(lambda: load_dataset(folder), f"{folder / 'corpus.jsonl'}:2:", "expected a JSON object, got list")


def test_missing_id(tmp_path):
    folder = _corpus_lines(tmp_path, ['{"_id": "d1", "text": "a"}', '{"_id": "d2", "text": "b"}', '{"text": "c"}'])
    expect_error(lambda: load_dataset(folder), f"{folder / 'corpus.jsonl'}:3:", "'_id'")
    folder = beir(tmp_path, queries=[{"_id": "q1", "text": "x"}, {"text": "no id"}])
    expect_error(lambda: load_dataset(folder), f"{folder / 'queries.jsonl'}:2:", "'_id'")


def test_duplicate_doc_id(tmp_path):
    folder = _corpus_lines(tmp_path, ['{"_id": "d1", "text": "a"}', '{"_id": "d2", "text": "b"}', '{"_id": "d1", "text": "c"}'])
    expect_error(lambda: load_dataset(folder), f"{folder / 'corpus.jsonl'}:3:", "duplicate document id 'd1'", "line 1")


def test_duplicate_query_id(tmp_path):
    folder = beir(tmp_path, queries=[{"_id": "q1", "text": "x"}, {"_id": "q2", "text": "y"}, {"_id": "q2", "text": "z"}])
    expect_error(lambda: load_dataset(folder), f"{folder / 'queries.jsonl'}:3:", "duplicate query id 'q2'", "line 2")


@pytest.mark.parametrize("line", ["q1\td1", "q1 d1 1 2 3"])
def test_bad_qrels_columns(tmp_path, line):
    folder = beir(tmp_path, qrels={"test": f"query-id\tcorpus-id\tscore\nq2\td2\t1\n{line}\n"})
    expect_error(lambda: load_dataset(folder), f"{folder / 'qrels' / 'test.tsv'}:3:", "expected 3 columns")


def test_beir_qrels_are_tab_separated_ids_with_spaces_and_hangul(tmp_path):
    """Issue 19, defect 14: BEIR's loader reads qrels/*.tsv as tab-separated, so document ids may hold spaces (real
    sets name chunks like ``finance - <file>.pdf - 4``). One space used to read as a 4-column TREC line with the
    wrong ids, several spaces as "expected 3 columns ... got 10". TREC's whitespace form still reads."""
    ids = ["finance - 2024 보고서 final.pdf - 4", "인사 규정 v2", "d one"]
    corpus = [{"_id": d, "title": f"t{i}", "text": f"text {i}"} for i, d in enumerate(ids)]
    queries = [{"_id": "질문 1", "text": "연차"}, {"_id": "q2", "text": "finance"}]
    qrels = ("query-id\tcorpus-id\tscore\n"
             f"질문 1\t{ids[1]}\t2\n"
             f"q2\t{ids[0]}\t1\n"
             f"q2\t{ids[2]}\t 0 \r\n")  # a padded score, a CRLF line end
    ds = load_dataset(beir(tmp_path / "a", corpus=corpus, queries=queries, qrels={"test": qrels}))
    assert ds.qrels["test"] == {"질문 1": {"인사 규정 v2": 2}, "q2": {ids[0]: 1, "d one": 0}}
    assert not ds.warnings
    # TREC qrels (no tab): whitespace, 4 columns
    trec = "q1 0 d1 1\nq2  0  d2  2\n"
    assert load_dataset(beir(tmp_path / "b", qrels={"test": trec})).qrels["test"] == {"q1": {"d1": 1}, "q2": {"d2": 2}}
    # a space-separated line that is not TREC's 4 columns is refused, never guessed
    folder = beir(tmp_path / "c", qrels={"test": "q1 d1 1\n"})
    expect_error(lambda: load_dataset(folder), f"{folder / 'qrels' / 'test.tsv'}:1:", "expected 3 columns",
                 "got 3 whitespace-separated column(s)")


def test_gold_folder_qrels_with_spaces_round_trip(tmp_path):
    """A gold folder written with such ids reads back the same (write_gold writes tabs)."""
    from evolve.gold import read_gold, write_gold

    queries = {"질문 1": "연차 휴가 신청", "q 2": "finance report"}
    qrels = {"질문 1": {"인사 규정 v2": 2}, "q 2": {"finance - 2024 보고서 final.pdf - 4": 1}}
    out = write_gold(tmp_path / "gold", queries, qrels)
    gold = read_gold(out)
    assert gold.queries == queries and gold.qrels == qrels


@pytest.mark.parametrize("rel", ["high", "0.5", "nan", "inf"])
def test_non_integer_relevance(tmp_path, rel):
    folder = beir(tmp_path, qrels={"test": f"q1\td1\t{rel}\n"})
    expect_error(lambda: load_dataset(folder), f"{folder / 'qrels' / 'test.tsv'}:1:", f"expected an integer relevance, got '{rel}'")


def test_missing_files(tmp_path):
    folder = beir(tmp_path)
    (folder / "queries.jsonl").unlink()
    expect_error(lambda: load_beir(folder), str(folder), "queries.jsonl")
    folder = beir(tmp_path / "b")
    for p in (folder / "qrels").iterdir():
        p.unlink()
    expect_error(lambda: load_beir(folder), "expected qrels/<split>.tsv or qrels.tsv")


def test_unrecognised_path(tmp_path):
    (tmp_path / "empty").mkdir()
    expect_error(lambda: load_dataset(tmp_path / "empty"), "expected a BEIR folder")
    expect_error(lambda: load_dataset(tmp_path / "nope"), "expected a bundled dataset name (scifact) or an existing path")


def test_unknown_bundled_name_did_you_mean():
    expect_error(lambda: load_dataset("scifakt"), "got 'scifakt'", "(did you mean 'scifact'?)")


def test_unknown_split_did_you_mean(tmp_path):
    ds = load_dataset(beir(tmp_path))
    expect_error(lambda: ds.split_qrels("tset"), "unknown split 'tset'", "expected one of test", "(did you mean 'test'?)")


# ----------------------------------------------------------------------------- warnings and --strict


def _dirty(tmp_path) -> Path:
    corpus = [*CORPUS, {"_id": "e1", "title": "", "text": "   "}, {"_id": "e2", "text": ""}]
    qrels = ("q1\td1\t1\nq2\td2\t1\n"
             "q9\td1\t1\nq8\td1\t1\nq7\td1\t1\nq6\td1\t1\n"  # 4 unknown queries
             "q1\tmissing1\t1\nq2\tmissing2\t1\n")  # 2 unknown documents
    return beir(tmp_path, corpus=corpus, qrels={"test": qrels})


def test_warnings_for_empty_docs_and_dangling_qrels(tmp_path):
    ds = load_dataset(_dirty(tmp_path))
    assert sorted(ds.corpus) == ["d1", "d2", "d3"]
    assert ds.qrels["test"] == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert ds.warnings == [
        "dropped 2 empty document(s): 'e1', 'e2'",
        "split 'test': dropped qrels of 4 unknown quer(y/ies): 'q6', 'q7', 'q8', ...",
        "split 'test': dropped qrels pointing at 2 unknown document(s): 'missing1', 'missing2'",
    ]


def test_strict_turns_warnings_into_errors(tmp_path):
    folder = _dirty(tmp_path)
    expect_error(lambda: load_dataset(folder, strict=True), str(folder), "dropped 2 empty document(s)", "--strict")
    folder = beir(tmp_path / "x", qrels={"test": "q1\td1\t1\nq9\td1\t1\n"})
    expect_error(lambda: load_dataset(folder, strict=True), "1 unknown quer(y/ies): 'q9'")
    folder = beir(tmp_path / "y", qrels={"test": "q1\td1\t1\nq1\tnope\t1\n"})
    expect_error(lambda: load_dataset(folder, strict=True), "1 unknown document(s): 'nope'")
    assert load_dataset(folder).warnings == ["split 'test': dropped qrels pointing at 1 unknown document(s): 'nope'"]


def test_split_without_usable_judgements_is_an_error(tmp_path):
    folder = beir(tmp_path, qrels={"test": "q1\td1\t1\n", "dev": "q9\td1\t1\n"})
    expect_error(lambda: load_dataset(folder), "split 'dev' has no usable judgements")


# ----------------------------------------------------------------------------- fingerprints


def test_fingerprints(tmp_path):
    folder = beir(tmp_path)
    a, b = load_dataset(folder), load_dataset(folder)
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 64
    # a gzipped copy of the same content has the same fingerprint
    assert load_dataset(beir(tmp_path / "gz", gz=True)).fingerprint == a.fingerprint

    # one document's text changes: corpus and dataset fingerprints change, the gold does not
    changed = [dict(CORPUS[0], text="alpha text!"), *CORPUS[1:]]
    c = load_dataset(beir(tmp_path / "c", corpus=changed))
    assert c.corpus_fingerprint() != a.corpus_fingerprint()
    assert c.qrels_fingerprint() == a.qrels_fingerprint()
    assert c.fingerprint != a.fingerprint

    # a judged query's text or a judgement changes: the gold changes, the corpus does not
    q = load_dataset(beir(tmp_path / "q", queries=[{"_id": "q1", "text": "what is alpha?"}, QUERIES[1]]))
    assert q.corpus_fingerprint() == a.corpus_fingerprint()
    assert q.qrels_fingerprint() != a.qrels_fingerprint()
    r = load_dataset(beir(tmp_path / "r", qrels={"test": "q1\td1\t2\nq2\td2\t2\n"}))
    assert r.qrels_fingerprint() != a.qrels_fingerprint() and r.corpus_fingerprint() == a.corpus_fingerprint()

    # a query nobody judges is not part of the gold
    extra = load_dataset(beir(tmp_path / "e", queries=[*QUERIES, {"_id": "q3", "text": "unjudged"}]))
    assert extra.qrels_fingerprint() == a.qrels_fingerprint()
    assert extra.fingerprint == a.fingerprint

    # document order in the file does not matter
    rev = load_dataset(beir(tmp_path / "o", corpus=list(reversed(CORPUS))))
    assert rev.fingerprint == a.fingerprint


def test_bundled_scifact(scifact):
    assert scifact.name == "scifact"
    assert len(scifact.corpus) == 5183
    assert scifact.splits == ["test", "train"]
    assert len(scifact.qrels["test"]) == 300
    assert scifact.warnings == []
    assert load_dataset("scifact").fingerprint == scifact.fingerprint


def test_subset(scifact, scifact_small):
    assert len(scifact_small.corpus) == 300
    assert len(scifact_small.queries) == 60 == len(scifact_small.qrels["test"])
    again = scifact.subset(1000, "test")
    assert len(again.corpus) == 1000 and again.splits == ["test"]
    relevant = {d for docs in scifact.qrels["test"].values() for d in docs}
    assert relevant <= set(again.corpus)
    assert again.fingerprint == scifact.subset(1000, "test").fingerprint
    assert again.fingerprint != scifact.subset(1000, "test", seed=1).fingerprint


def test_subset_keeps_every_judged_document_of_the_queries_it_keeps(scifact):
    """Issue 14.11: at 400 documents the old subset cut the judged documents (sorted by id) at 400 and kept 57
    queries with only part of their qrels (easier queries, inflated scores). Now a query is kept whole or not
    at all, both splits keep queries, and the warning says how many were left out."""
    sub = scifact.subset(400, None)
    assert len(sub.corpus) == 400
    kept = [(s, q) for s, sq in sub.qrels.items() for q in sq]
    for s, q in kept:
        assert sub.qrels[s][q] == scifact.qrels[s][q]  # every judgement, as in the full dataset
        assert set(sub.qrels[s][q]) <= set(sub.corpus)
    n_all = sum(len(sq) for sq in scifact.qrels.values())
    assert 0 < len(kept) < n_all and sub.qrels["test"] and sub.qrels["train"]
    assert sub.warnings == [f"subset of 400 documents: kept {len(kept)} of {n_all} queries whole; "
                            f"{n_all - len(kept)} left out because their judged documents did not fit"]
    assert set(sub.queries) == {q for _, q in kept}
    assert sub.fingerprint == scifact.subset(400, None).fingerprint  # seeded
    assert sub.fingerprint != scifact.subset(400, None, seed=1).fingerprint
    # room for everything: every query, no warning
    assert scifact.subset(1000, None).qrels == scifact.qrels and scifact.subset(1000, None).warnings == []


def test_subset_too_small_for_any_query_is_one_line(scifact):
    from conftest import expect_one_line

    from evolve.errors import DatasetError

    expect_one_line(lambda: scifact.subset(0, "test"), "subset: expected room for the judged documents of at least "
                    "one query (the fewest a query has is 1), got 0 documents", exc=DatasetError)


def test_shared_scifact_matches_bundled(scifact):
    ds = load_dataset(shared_dataset("scifact"))
    assert ds.fingerprint == scifact.fingerprint
    assert ds.corpus_fingerprint() == scifact.corpus_fingerprint()


def test_korquad_subset():
    path = shared_dataset("korquad") / "KorQuAD_v1.0_dev.articles-A.json"
    ds = load_dataset(path)
    assert len(ds.corpus) == 528
    assert len(ds.queries) == 2959
    assert ds.splits == ["test"]
    assert sum(len(docs) for docs in ds.qrels["test"].values()) == 2959
    assert len(ds.qrels["test"]) == 2959
    assert ds.warnings == []
    assert all(unicodedata.is_normalized("NFC", d.text) for d in ds.corpus.values())
    assert all("-" in d for d in ds.corpus)
