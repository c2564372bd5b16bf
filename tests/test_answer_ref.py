"""Issue 18, measuring answers: reference answers (the SQuAD loader, gold folders, ``gold generate``), exact match
and F1 as the official SQuAD v1.1 and KorQuAD 1.0 scripts compute them, and ``context_recall@T``.

Every expected value is derived by hand in the test (the comments show the arithmetic); nothing is read back from
the code under test. Real parts: real gold folders on disk, the real packing code and a real local tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import math

import pytest
from conftest import expect_one_line, shared_dataset

# ------------------------------------------------------------------------------------------ EM / F1: SQuAD v1.1


@pytest.mark.parametrize(
    ("pred", "refs", "em", "f1"),
    [
        # lower-case, punctuation and "The" removed: "eiffel tower" == "eiffel tower"
        ("The Eiffel Tower!", ["eiffel tower"], 1.0, 1.0),
        # articles a/an removed: "an apple a day" -> "apple day"
        ("an apple a day", ["Apple, day."], 1.0, 1.0),
        # pred "in city of paris" (4 tokens; "the" removed). ref 1 "paris": 1 shared, P 1/4, R 1/1,
        # F1 = 2*(1/4)*1/(1/4+1) = 0.4. ref 2 "city of paris france": 3 shared, P 3/4, R 3/4, F1 0.75. max 0.75
        ("in the city of Paris", ["Paris", "city of Paris, France"], 0.0, 0.75),
        # "cats" vs "cat": no shared token, F1 0 (SQuAD does no stemming)
        ("cats", ["cat"], 0.0, 0.0),
        # "cat cat" vs "cat": shared min(2, 1) = 1, P 1/2, R 1, F1 = 2*(1/2)/(3/2) = 2/3
        ("the cat, the cat", ["cat"], 0.0, 2 / 3),
        # a prediction that normalises to nothing shares nothing: 0, as the script's `if num_same == 0`
        ("the", ["Paris"], 0.0, 0.0),
    ],
)
def test_squad_em_f1_worked_pairs(pred, refs, em, f1):
    from evolve.answer.metrics import squad_em, squad_f1

    assert squad_em(pred, refs) == em
    assert math.isclose(squad_f1(pred, refs), f1, abs_tol=1e-12)


# ------------------------------------------------------------------------------------------ EM / F1: KorQuAD 1.0


@pytest.mark.parametrize(
    ("pred", "refs", "em", "f1"),
    [
        # 《 》 become spaces, whitespace collapses: "로널드 레이건 대통령" on both sides
        ("《로널드 레이건》  대통령", ["로널드 레이건 대통령"], 1.0, 1.0),
        # characters: pred 레이건대통령 (6), ref 로널드레이건대통령 (9), 6 shared: P 1, R 6/9,
        # F1 = 2*1*(2/3)/(1+2/3) = 0.8
        ("레이건 대통령", ["로널드 레이건 대통령"], 0.0, 0.8),
        # the particle: chars 레이건이 (4) vs 레이건 (3): 레 1 + 이 min(2,1)=1 + 건 1 = 3 shared, P 3/4, R 1,
        # F1 = 2*(3/4)/(7/4) = 6/7 (SQuAD's token F1 would give 0: "레이건이" != "레이건")
        ("레이건이", ["레이건"], 0.0, 6 / 7),
        # no article removal in KorQuAD: "the 서울" -> chars t h e 서 울 (5) vs 서 울 (2): P 2/5, R 1, F1 = 4/7
        ("the 서울", ["서울"], 0.0, 4 / 7),
        # lower-case and string.punctuation removed: "bts" == "bts"
        ("BTS!", ["bts"], 1.0, 1.0),
        # the best of two references: "1990년" vs "1990년 5월" (chars 1 9 9 0 년 = 5 of 7: P 1, R 5/7,
        # F1 = 2*(5/7)/(12/7) = 10/12) and vs "1990년" (exact)
        ("1990년", ["1990년 5월", "(1990년)"], 1.0, 1.0),
    ],
)
def test_korquad_em_f1_worked_pairs(pred, refs, em, f1):
    from evolve.answer.metrics import korquad_em, korquad_f1

    assert korquad_em(pred, refs) == em
    assert math.isclose(korquad_f1(pred, refs), f1, abs_tol=1e-12)


def test_korquad_f1_of_one_reference_is_not_the_max_of_two():
    from evolve.answer.metrics import korquad_f1

    # the first reference alone: 5 of 7 characters, F1 = 10/12 (see above)
    assert math.isclose(korquad_f1("1990년", ["1990년 5월"]), 10 / 12, abs_tol=1e-12)


def test_answer_em_f1_picks_the_script_by_the_references_language():
    from evolve.answer.metrics import answer_em_f1

    # Korean references -> KorQuAD's character F1 (6/7, above); SQuAD's token F1 would be 0
    assert answer_em_f1("레이건이", ["레이건"]) == (0.0, pytest.approx(6 / 7))
    # English references -> SQuAD: "the" removed, so EM 1 (KorQuAD keeps "the": EM 0)
    assert answer_em_f1("the Eiffel Tower", ["Eiffel Tower"]) == (1.0, 1.0)
    # Korean prediction, English reference: SQuAD's rules; nothing shared
    assert answer_em_f1("에펠탑", ["Eiffel Tower"]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="expected at least one reference answer"):
        answer_em_f1("anything", [])



def test_a_korean_question_is_scored_by_korquad_whatever_its_answer():
    """KorQuAD's official script scores every question of the set by its character F1, answers without Hangul
    included: the question's language decides first."""
    from evolve.answer.metrics import answer_em_f1, answer_in_context

    # "1989년" vs "1989": KorQuAD chars {1,9,8,9,년} vs {1,9,8,9}: 4 shared, P 4/5, R 4/4 -> F1 2*(4/5)/(9/5) = 8/9;
    # by the references alone (no Hangul) SQuAD's tokens "1989년" vs "1989" share nothing: F1 0
    assert answer_em_f1("1989년", ["1989"], "ko") == (0.0, pytest.approx(8 / 9))
    assert answer_em_f1("1989년", ["1989"]) == (0.0, 0.0)
    # the particle glued on after punctuation is removed: KorQuAD finds "uscf" in "uscf에서는" (substring);
    # SQuAD's word-boundary match (" uscf " in " ... uscf에서는 ... ") does not
    passage = ["미국 체스 연맹(USCF)에서는 등급을 매긴다"]
    assert answer_in_context(passage, ["USCF"], "ko") is True
    assert answer_in_context(passage, ["USCF"]) is False
    # an English question keeps SQuAD's rules
    assert answer_em_f1("the Eiffel Tower", ["Eiffel Tower"], "en") == (1.0, 1.0)

# ------------------------------------------------------------------------------------------ reference answers


def _old_qrels_fingerprint(queries: dict, qrels: dict) -> str:
    """Dataset.qrels_fingerprint as it was before reference answers existed (the formula, written out)."""
    used = {q for split in qrels.values() for q in split}
    blob = {"queries": sorted((q, queries[q]) for q in used if q in queries), "qrels": qrels}
    return hashlib.sha256(
        json.dumps(blob, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    ).hexdigest()


def test_squad_loader_keeps_reference_answers(tmp_path):
    from evolve.datasets import load_dataset

    nfd = "\u1100\u1161"  # 가 in NFD (as macOS exports write it)
    data = {
        "version": "1",
        "data": [
            {
                "title": "T",
                "paragraphs": [
                    {
                        "context": "Paris is the capital. 가나 is Korean.",
                        "qas": [
                            {
                                "id": "a-0-0",
                                "question": "capital?",
                                "answers": [
                                    {"text": "Paris", "answer_start": 0},
                                    {"text": "Paris", "answer_start": 0},
                                    {"text": "Paris is the capital", "answer_start": 0},
                                    {"text": "Paris", "answer_start": 0},
                                ],
                            },
                            {
                                "id": "a-0-1",
                                "question": "Korean?",
                                "answers": [{"text": nfd + "나", "answer_start": 22}],
                            },
                            {"id": "a-0-2", "question": "none?", "answers": []},
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "mini.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    ds = load_dataset(path)
    # duplicates dropped, order kept; NFD -> NFC; a question without answers has no entry
    assert ds.answers == {"a-0-0": ["Paris", "Paris is the capital"], "a-0-1": ["가나"]}
    # answers are never part of the corpus fingerprint; they enter the gold fingerprint (they exist here)
    for qa in data["data"][0]["paragraphs"][0]["qas"]:
        qa["answers"] = []
    path2 = tmp_path / "mini2.json"
    path2.write_text(json.dumps(data), encoding="utf-8")
    bare = load_dataset(path2)
    assert bare.answers == {}
    assert bare.corpus_fingerprint() == ds.corpus_fingerprint()
    assert bare.qrels_fingerprint() == _old_qrels_fingerprint(bare.queries, bare.qrels)
    assert ds.qrels_fingerprint() != bare.qrels_fingerprint()
    # a subset keeps the answers of the queries it keeps
    assert ds.subset(1).answers == ds.answers


def test_korquad_subset_a_loads_with_answers():
    from evolve.datasets import load_dataset

    path = shared_dataset("korquad") / "KorQuAD_v1.0_dev.articles-A.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    qas = [qa for a in raw["data"] for p in a["paragraphs"] for qa in p["qas"]]
    ds = load_dataset(path)
    # every one of the 2,959 questions has exactly one answer in the dev file, and every one is kept
    assert len(ds.answers) == len(qas) == 2959
    assert all(ds.answers[qa["id"]] == [qa["answers"][0]["text"].strip()] for qa in qas)
    # KorQuAD answers are spans of their paragraph: each occurs in its query's document
    assert all(ds.answers[q][0] in ds.corpus[next(iter(docs))].text for q, docs in ds.qrels["test"].items())


def _old_gold_fingerprint(gold) -> str:
    """GoldSet.fingerprint as it was before reference answers existed (the formula, written out)."""
    blob = {
        "queries": sorted(gold.queries.items()),
        "qrels": {q: sorted(d.items()) for q, d in sorted(gold.qrels.items())},
        "pinned": {r: {q: sorted(d.items()) for q, d in sorted(p.items())} for r, p in sorted(gold.pinned.items())},
    }
    return hashlib.sha256(json.dumps(blob, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def test_gold_folder_answers_round_trip_and_fingerprint(tmp_path):
    from evolve.gold import read_gold, write_gold

    queries = {"q1": "what is the capital", "q2": "수도는 어디인가", "q3": "no answer here"}
    qrels = {"q1": {"d1": 2}, "q2": {"d2": 2}, "q3": {"d3": 1}}
    meta = {"q1": {"lang": "en", "answers": ["stale, replaced"]}, "q3": {"lang": "en"}}
    plain = read_gold(write_gold(tmp_path / "plain", queries, qrels, metadata=meta | {"q1": {"lang": "en"}}))
    assert plain.answers == {}
    assert plain.fingerprint() == _old_gold_fingerprint(plain)  # byte-identical without answers

    answers = {"q1": ["Paris", " Paris ", "the city of Paris"], "q2": ["서울"]}
    folder = write_gold(tmp_path / "with", queries, qrels, metadata=meta, answers=answers)
    gold = read_gold(folder)
    # stripped, deduplicated, order kept; the answers argument replaces what the metadata held; other keys stay
    assert gold.answers == {"q1": ["Paris", "the city of Paris"], "q2": ["서울"]}
    assert gold.metadata["q1"] == {"lang": "en", "answers": ["Paris", "the city of Paris"]}
    assert gold.fingerprint() != plain.fingerprint()
    # written back as read: the same folder, the same fingerprint
    again = read_gold(write_gold(tmp_path / "again", gold.queries, gold.qrels, metadata=gold.metadata))
    assert again.answers == gold.answers and again.fingerprint() == gold.fingerprint()
    # one string is one answer
    line = json.dumps({"_id": "q1", "text": "x", "metadata": {"answers": "Paris"}})
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "queries.jsonl").write_text(line + "\n", encoding="utf-8")
    (tmp_path / "one" / "qrels.tsv").write_text("q1\td1\t1\n", encoding="utf-8")
    assert read_gold(tmp_path / "one").answers == {"q1": ["Paris"]}


def test_gold_folder_bad_answers_is_one_line_with_file_and_line(tmp_path):
    from evolve.errors import DatasetError
    from evolve.gold import read_gold

    folder = tmp_path / "bad"
    folder.mkdir()
    lines = [
        json.dumps({"_id": "q1", "text": "x"}),
        json.dumps({"_id": "q2", "text": "y", "metadata": {"answers": [1]}}),
    ]
    (folder / "queries.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "qrels.tsv").write_text("q1\td1\t1\n", encoding="utf-8")
    expect_one_line(
        lambda: read_gold(folder),
        f"{folder / 'queries.jsonl'}:2",
        "expected metadata 'answers' to be a string or a list of strings, got [1]",
        exc=DatasetError,
    )


def test_gold_answers_flow_into_the_dataset(tmp_path):
    from evolve.datasets import Dataset, Document
    from evolve.gold import GoldSpec, apply_gold, write_gold

    corpus = {f"d{i}": Document(f"d{i}", "", f"document {i} text") for i in range(3)}
    ds = Dataset("tiny", "/tiny", corpus, {"t1": "own query"}, {"test": {"t1": {"d0": 1}}}, [], {"t1": ["own answer"]})
    folder = write_gold(
        tmp_path / "g",
        {"g1": "gold one", "g2": "gold two"},
        {"g1": {"d1": 2}, "g2": {"d2": 2}},
        answers={"g1": ["document 1"]},
    )
    merged, _ = apply_gold(ds, GoldSpec.parse([str(folder)], "merge"))
    assert merged.answers == {"t1": ["own answer"], "g1": ["document 1"]}
    replaced, _ = apply_gold(ds, GoldSpec.parse([str(folder)], "replace"))
    assert replaced.answers == {"g1": ["document 1"]}
    # the answers are part of the gold fingerprint, never of the corpus fingerprint
    bare = Dataset("tiny", "/tiny", corpus, replaced.queries, replaced.qrels)
    assert bare.corpus_fingerprint() == replaced.corpus_fingerprint()
    assert bare.qrels_fingerprint() != replaced.qrels_fingerprint()


# ------------------------------------------------------------------------------------------ context_recall@T


def _cand(doc_id: str, text: str, rank: int, title: str = "T"):
    from evolve.answer import Candidate

    return Candidate(doc_id, title, None, text, rank)


def test_answer_in_context_normalises_and_matches_words_or_korean_substrings():
    from evolve.answer.metrics import answer_in_context

    # SQuAD normalisation on both sides ("The U.S. Army" -> "us army"), matched at word boundaries
    assert answer_in_context(["He joined the U.S. Army in 1950."], ["The U.S. Army"])
    assert not answer_in_context(["a concatenated string"], ["cat"])
    # KorQuAD normalisation; a Korean answer followed by its particle is found
    assert answer_in_context(["그는 《서울》에서 태어났다."], ["서울"])
    # a reference that normalises to nothing is never found
    assert not answer_in_context(["the the the"], ["the"])


def test_context_recall_counts_what_the_packing_keeps():
    """Whitespace tokens: a passage renders as "[n] T" + newline + its text, so a 10-word text is 1 + 1 + 10 = 12
    tokens. The answer "congo" is in the second passage only."""
    from evolve.answer.metrics import context_recall

    first = _cand("d1", "okapi stripes okapi stripes a b c d e f", 1)
    second = _cand("d2", "okapi stripes live in the congo g h i j", 2)
    # T = 12: the first passage fills the budget exactly; 0 tokens left < MIN_PART_TOKENS, so nothing is truncated in
    assert context_recall([first, second], ["Congo"], 12, "whitespace") == 0.0
    # T = 24: both (12 + 12)
    assert context_recall([first, second], ["Congo"], 24, "whitespace") == 1.0
    # max_passages 1 keeps only the first, whatever the budget
    assert context_recall([first, second], ["Congo"], 1000, "whitespace", max_passages=1) == 0.0
    # a truncated passage counts only the text it keeps: a 60-word second passage with the answer as its last
    # word, after a 12-token first passage, at T = 50: 38 tokens left >= 32, so it is truncated to its leading
    # sentences that fit; it is one sentence of 2 + 60 = 62 tokens, so a word prefix of at most 38 - 2 = 36 words
    # is kept, without the 60th word
    long = _cand("d3", " ".join(["w"] * 59 + ["congo"]), 2)
    assert context_recall([first, long], ["congo"], 50, "whitespace") == 0.0
    assert context_recall([first, long], ["congo"], 74, "whitespace") == 1.0  # 12 + 62 = 74: whole
    with pytest.raises(ValueError, match="expected at least one reference answer"):
        context_recall([first], [], 12, "whitespace")


def _animals_squad(tmp_path):
    """A SQuAD-style file: 5 questions with an answer, 3 without. Every paragraph is 10 words (titles "T").

    q1..q3: only their own paragraph holds their words (it ranks first; the answer is in it).
    q4, q5: a decoy paragraph holds both query words twice (the answer paragraph once, same length), so under
    BM25 the decoy ranks first and the answer paragraph second; the decoys' own questions (q7, q8) have no
    answer, and neither has q6."""
    paras = [
        ("quokka habitat rottnest island pa pb pc pd pe pf", "q1", "quokka habitat", ["Rottnest Island"]),
        ("kiwi plumage zealand qa qb qc qd qe qf qg", "q2", "kiwi plumage", ["Zealand"]),
        ("tapir snout malaysia ra rb rc rd re rf rg", "q3", "tapir snout", ["malaysia"]),
        ("okapi stripes congo sa sb sc sd se sf sg", "q4", "okapi stripes", ["Congo"]),
        ("narwhal tusk arctic ta tb tc td te tf tg", "q5", "narwhal tusk", ["arctic"]),
        ("platypus bill ua ub uc ud ue uf ug uh", "q6", "platypus bill", []),
        ("okapi stripes okapi stripes va vb vc vd ve vf", "q7", "okapi decoy", []),
        ("narwhal tusk narwhal tusk wa wb wc wd we wf", "q8", "narwhal decoy", []),
    ]
    data = {
        "version": "1",
        "data": [
            {
                "title": "T",
                "paragraphs": [
                    {
                        "context": ctx,
                        "qas": [
                            {
                                "id": f"a-{i}-{qid}",
                                "question": q,
                                "answers": [{"text": a, "answer_start": ctx.lower().find(a.lower())} for a in refs],
                            }
                        ],
                    }
                    for i, (ctx, qid, q, refs) in enumerate(paras)
                ],
            }
        ],
    }
    path = tmp_path / "animals.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_context_recall_small_budget_loses_exactly_the_second_ranked_answers(tmp_path):
    from evolve.cache import EmbeddingCache
    from evolve.config import load_config
    from evolve.datasets import load_dataset
    from evolve.pipeline import evaluate_config

    ds = load_dataset(_animals_squad(tmp_path))
    assert len(ds.answers) == 5
    cfg = load_config(None, ["retrieval.mode=sparse", "answer.tokenizer=whitespace", "answer.max_passages=8"])
    metrics = ["ndcg@10", "context_recall@12", "context_recall@100"]
    ev = evaluate_config(cfg, ds, "test", cache=EmbeddingCache(None), metrics=metrics)
    # only the 5 queries with an answer are scored
    assert set(ev.per_query["context_recall@12"]) == {q for q in ds.queries if ds.answers.get(q)}
    # T = 12 holds the first passage (12 tokens) only: q1, q2, q3 find their answer, q4 and q5 do not -> 3/5
    assert ev.metrics["context_recall@12"] == pytest.approx(3 / 5)
    # T = 100 holds all 8 passages (8 x 12 = 96): all 5 -> 5/5; the difference is the 2 second-ranked answers
    assert ev.metrics["context_recall@100"] == pytest.approx(1.0)
    lost = {q.split("-")[-1] for q, v in ev.per_query["context_recall@12"].items() if v == 0.0}
    assert lost == {"q4", "q5"}
    summary = ev.summary()
    assert summary["n_queries"] == 8
    assert summary["context_recall"] == {
        "tokenizer": "whitespace",
        "max_passages": 8,
        "prompt_version": "1",
        "n_queries": 5,
    }
    table = ev.per_query_table().splitlines()
    assert table[0] == "query_id\tndcg@10\tcontext_recall@12\tcontext_recall@100"
    assert any(line.endswith("\t-\t-") for line in table)  # a query without an answer has no context value


# ------------------------------------------------------------------------------------------ evolve run on it


def _letters(i: int) -> str:
    return "".join(chr(97 + int(c)) for c in f"{i:03d}")


def _decoy_squad(tmp_path, n_direct: int = 16, n_decoy: int = 8):
    """Like :func:`_animals_squad`, larger: ``n_direct`` questions whose own paragraph ranks first (answer in
    it), ``n_decoy`` whose answer paragraph ranks second behind a decoy (the decoys' questions have no answer).
    Every paragraph is 10 words, all words letters only, each paragraph's filler its own."""
    paras = []
    for i in range(n_direct + n_decoy):
        k1, k2, ans = f"keya{_letters(i)}", f"keyb{_letters(i)}", f"ans{_letters(i)}"
        fill = [f"fill{_letters(i)}{chr(97 + j)}" for j in range(7)]
        paras.append((" ".join([k1, k2, ans, *fill]), f"a{i}", f"{k1} {k2}", [ans]))
        if i >= n_direct:
            decoy = " ".join([k1, k2, k1, k2, *[f"dec{_letters(i)}{chr(97 + j)}" for j in range(6)]])
            paras.append((decoy, f"d{i}", f"{k1} decoy", []))
    data = {
        "version": "1",
        "data": [
            {
                "title": "T",
                "paragraphs": [
                    {
                        "context": ctx,
                        "qas": [
                            {
                                "id": f"x-{n}-{qid}",
                                "question": q,
                                "answers": [{"text": a, "answer_start": ctx.find(a)} for a in refs],
                            }
                        ],
                    }
                    for n, (ctx, qid, q, refs) in enumerate(paras)
                ],
            }
        ],
    }
    path = tmp_path / "decoys.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _cli(*args: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from evolve.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_a_night_tunes_on_context_recall_and_another_tokenizer_is_another_study(tmp_path):
    import optuna
    from conftest import REPO

    from evolve.splits import QuerySplits

    data = _decoy_squad(tmp_path)
    ws = tmp_path / "ws"
    space = str(REPO / "tests" / "data" / "space_bm25.yaml")
    common = [
        "--workspace",
        str(ws),
        "--study",
        "ctx",
        "--dataset",
        str(data),
        "--search-space",
        space,
        "--report-top",
        "0",
        "--objectives",
        "context_recall@12",
    ]
    rc, out, err = _cli("run", *common, "--trials", "2", "--seed", "1", "--set", "answer.tokenizer=whitespace")
    assert rc == 0, err
    storage = f"sqlite:///{ws / 'optuna.db'}"
    study = optuna.load_study(study_name="ctx", storage=storage)
    assert study.user_attrs["evolve.answer_context"] == {
        "tokenizer": "whitespace",
        "max_passages": 8,
        "prompt_version": "1",
    }
    tune = QuerySplits.from_dict(study.user_attrs["evolve.splits"]).tune
    answered = [q for q in tune if q.endswith(tuple(f"-a{i}" for i in range(24)))]
    direct = [q for q in answered if int(q.rsplit("-a", 1)[1]) < 16]
    # whitespace tokens: each passage is 12 ("[n]", "T", 10 words), so T = 12 holds the first-ranked passage only.
    # BM25 ranks a decoy (both query words twice, same length) above its answer paragraph for any k1 > 0 and b,
    # so every trial finds exactly the direct questions' answers: value = direct / answered tune queries
    expected = len(direct) / len(answered)
    assert 0 < expected < 1
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2
    for t in done:
        assert t.value == pytest.approx(expected)
        assert t.user_attrs["evolve.metrics"]["context_recall@12"] == pytest.approx(expected)
        assert "ndcg@10" in t.user_attrs["evolve.metrics"]  # the ranx metrics are still recorded beside it
        # the pruner's per-query reports: one per answered tune query, 1 for a direct one, 0 behind a decoy
        assert sorted(t.intermediate_values.values()) == sorted(
            [0.0] * (len(answered) - len(direct)) + [1.0] * len(direct)
        )
    # the same night counted with another tokenizer is another study, never compared with this one
    rc, out, err = _cli("run", *common, "--trials", "1", "--seed", "1", "--set", "answer.tokenizer=minilm")
    assert rc == 0, err
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert len(names) == 2 and names[0] == "ctx" and names[1].startswith("ctx-")
    # and --continue-stale cannot join them
    rc, out, err = _cli("run", *common, "--trials", "1", "--continue-stale", "--set", "answer.tokenizer=minilm")
    assert rc == 2
    assert "scored context_recall with answer settings" in err and "never compare" in err
    assert len(err.strip().splitlines()) == 1


def test_context_recall_objective_without_answers_is_one_line(tmp_path):
    from conftest import REPO

    ds = tmp_path / "beir"
    (ds / "qrels").mkdir(parents=True)
    (ds / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": f"doc {i} words"}) + "\n" for i in range(4))
    )
    (ds / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": f"doc {i}"}) + "\n" for i in range(4))
    )
    (ds / "qrels" / "test.tsv").write_text("".join(f"q{i}\td{i}\t1\n" for i in range(4)))
    rc, out, err = _cli(
        "run",
        "--workspace",
        str(tmp_path / "ws"),
        "--dataset",
        str(ds),
        "--search-space",
        str(REPO / "tests" / "data" / "space_bm25.yaml"),
        "--trials",
        "1",
        "--objectives",
        "context_recall@2000",
    )
    assert rc == 2
    assert err.strip() == (
        "error: objective context_recall@2000: expected tune queries with reference answers (a "
        "SQuAD-style dataset, or a gold folder whose queries carry 'answers'), got none"
    )
    rc, out, err = _cli(
        "run", "--workspace", str(tmp_path / "ws"), "--dataset", str(ds), "--objectives", "context_recall@0"
    )
    assert rc == 2 and "expected a ranx metric like ndcg@10, context_recall@T" in err


def test_the_gate_counts_both_configs_with_one_answer_setting(tmp_path):
    """``decide`` on ``context_recall@100``: the champion is scored with the candidate's (the study's) answer
    settings. Were it scored with its own ``max_passages: 1``, only the first-ranked passage would count: 3/5
    (q4 and q5 lose their answer, as above); with the candidate's 8 passages it finds all 5."""
    from evolve.cache import EmbeddingCache
    from evolve.config import load_config
    from evolve.datasets import load_dataset
    from evolve.looks import LookBudget
    from evolve.promote import decide

    ds = load_dataset(_animals_squad(tmp_path))
    candidate = load_config(None, ["retrieval.mode=sparse", "sparse.k1=1.2", "answer.tokenizer=whitespace"])
    champion = load_config(
        None, ["retrieval.mode=sparse", "sparse.k1=0.9", "answer.tokenizer=whitespace", "answer.max_passages=1"]
    )
    look = LookBudget("f" * 64, 10, 0.05, 0)
    verdict = decide(
        candidate,
        champion,
        ds,
        ds.qrels["test"],
        look=look,
        metric="context_recall@100",
        cache=EmbeddingCache(None),
        n_permutations=100,
    )
    assert (verdict.champion_score, verdict.candidate_score) == (1.0, 1.0)
    assert verdict.test.n_queries == 5 and verdict.test.tie == 5  # only the queries with an answer are paired
