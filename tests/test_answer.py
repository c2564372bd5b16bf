"""The answer library (evolve.answer, evolve.passages, evolve.llm streaming): worked examples whose expected values
are derived by hand in each test, the chunk-level passage step against the retrievers' own scores, the answer
config's place outside every retrieval identity, and the SSE reader on the lines vLLM and Ollama send."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import expect_one_line

from evolve.answer import (
    Candidate,
    check_answer,
    get_tokenizer,
    is_refusal,
    load_answer_prompt,
    not_found_lines,
    pack,
    prompt_versions,
    question_language,
)
from evolve.config import PipelineConfig, apply_overrides
from evolve.errors import ConfigError

EN_LINE = "The answer is not in these documents."
KO_LINE = "이 문서들에서는 답을 찾을 수 없습니다."
WS = get_tokenizer("whitespace")  # one token per whitespace-separated word: counts derivable by hand
PROMPT = load_answer_prompt("1", "en")


# ------------------------------------------------------------------------------------------------ prompts, language
def test_prompts_ship_in_korean_and_english_with_fixed_refusal_lines():
    assert prompt_versions() == ("1",)
    assert not_found_lines("1") == {"en": EN_LINE, "ko": KO_LINE}
    en, ko = load_answer_prompt("1", "en"), load_answer_prompt("1", "ko")
    assert en.lang == "en" and ko.lang == "ko" and en.sha256 != ko.sha256 and len(en.sha256) == 64
    msgs = ko.messages("VPN 인증서 오류?", ["[1] 제목\n본문"])
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "VPN 인증서 오류?" in msgs[1]["content"] and KO_LINE in msgs[1]["content"] and "[1] 제목" in msgs[1]["content"]
    assert en.render_passage(2, "Title", "https://x/y", "text") == "[2] Title (https://x/y)\ntext"
    assert en.render_passage(2, "Title", None, "text") == "[2] Title\ntext"
    # a language without its own prompt gets English; an unknown version is one line with the choices
    assert load_answer_prompt("1", "fr").lang == "en"
    expect_one_line(lambda: load_answer_prompt("2", "en"), "answer.prompt_version: expected one of 1, got '2'")


def test_question_language_is_the_gold_filters_hangul_share():
    # "VPN 인증서 오류": letters V,P,N + 5 Hangul syllables -> 5/8 = 0.625 >= 0.3 -> ko
    assert question_language("VPN 인증서 오류") == "ko"
    # "printer 오류": 7 Latin + 2 Hangul letters -> 2/9 = 0.22 < 0.3 -> en
    assert question_language("printer 오류") == "en"
    assert question_language("How do I reset my password?") == "en"


# ------------------------------------------------------------------------------------------------ packing
def _cand(doc_id, title, words, url=None, rank=1, scores=None):
    return Candidate(doc_id, title, url, words, rank, scores or {})


def _sentences(prefix: str, n_sent: int, per: int) -> str:
    return " ".join(" ".join(f"{prefix}{s}{w}" for w in range(per)) + "." for s in range(n_sent))


def test_pack_worked_example_whole_then_truncated_then_stop():
    """Whitespace tokens. Rendered "[n] Title (url)\\ntext":
    A: "[1] Alpha" + 6 words = 2 + 6 = 8;  B: "[2] Beta (http://x/b)" + 10 words = 3 + 10 = 13;
    C: "[3] Gamma" + 4 sentences of 10 words = 2 + 40 = 42;  D: 2 + 5 = 7.
    Budget 55: A and B whole (21), 34 left >= 32: C truncated to whole sentences: header 2 + 3 x 10 = 32 <= 34
    (a 4th would make 42); packing stops there, so D is not packed although it would fit the 2 tokens left."""
    a = _cand("a", "Alpha", "a1 a2 a3 a4 a5 a6.", rank=1)
    b = _cand("b", "Beta", _sentences("b", 1, 10), url="http://x/b", rank=2)
    c = _cand("c", "Gamma", _sentences("c", 4, 10), rank=3)
    d = _cand("d", "Delta", "d1 d2 d3 d4 d5.", rank=4)
    ctx = pack([a, b, c, d], PROMPT, budget=55, max_passages=8, counter=WS)
    assert [(p.marker, p.doc_id, p.tokens, p.truncated) for p in ctx.passages] == [
        (1, "a", 8, False), (2, "b", 13, False), (3, "c", 32, True)]
    assert ctx.passages[2].text == _sentences("c", 3, 10)
    assert ctx.tokens == 53 and ctx.tokenizer == "local:whitespace" and ctx.left_out == 2  # c (partly) and d
    assert ctx.passages[1].public() == {"marker": 2, "doc_id": "b", "title": "Beta", "url": "http://x/b",
                                        "passage": _sentences("b", 1, 10)}
    # budget 50: 29 left after A and B is under MIN_PART_TOKENS (32): C is not truncated, packing stops
    ctx = pack([a, b, c, d], PROMPT, budget=50, max_passages=8, counter=WS)
    assert [p.doc_id for p in ctx.passages] == ["a", "b"] and ctx.tokens == 21
    # max_passages 1: A only, whatever the budget
    assert [p.doc_id for p in pack([a, b, c, d], PROMPT, budget=1000, max_passages=1, counter=WS).passages] == ["a"]
    # nothing offered: nothing packed
    assert pack([], PROMPT, budget=100, max_passages=8, counter=WS).passages == []


def test_pack_cuts_a_first_sentence_longer_than_the_budget_at_a_word():
    """One 50-word sentence "w00 ... w49." (200 characters), budget 40: header "[1] Long" is 2 tokens, no whole
    sentence fits, so the sentence is cut at int(200 * 38 / 50) = 152 characters, back to the last space (151):
    38 words "w00 ... w37", rendered 2 + 38 = 40 tokens."""
    words = [f"w{i:02d}" for i in range(50)]
    long = _cand("l", "Long", " ".join(words) + ".")
    ctx = pack([long], PROMPT, budget=40, max_passages=8, counter=WS)
    (p,) = ctx.passages
    assert p.truncated and p.text == " ".join(words[:38]) and p.tokens == 40


def test_pack_counts_with_the_server_tokenizer_and_says_so(llm_server):
    """vLLM's /tokenize counts the passages (the served model's own tokenizer); each count is that of the
    rendered passage as the server tokenizes it, so the total is their sum."""
    from evolve.answer import ServerTokenCounter
    from evolve.llm import ChatClient

    with ChatClient(llm_server.url, llm_server.model) as client:
        counter = ServerTokenCounter(client, get_tokenizer("minilm"))
        a = _cand("a", "Printer", "Restart the print spooler.")
        ctx = pack([a], PROMPT, budget=500, max_passages=8, counter=counter)
        expected = client.count_tokens([PROMPT.render_passage(1, "Printer", None, "Restart the print spooler.")])
    assert ctx.tokenizer == f"server:{llm_server.model}" and ctx.tokens == expected[0] > 0


def test_a_stalled_tokenize_falls_back_to_the_local_count_and_is_left_alone_a_while(llm_server):
    """Packing (so the sources) must not wait on a stalled LLM. The proxy (a stand-in) answers every POST after 8 s:
    /tokenize gets TOKENIZE_TIMEOUT (5 s), not the chat timeout (120 s), so the count falls back (None); the next
    count asks nothing (the proxy sees no POST) until tokenize_cooldown has passed; then the server counts again."""
    import time

    from fault_proxy import FaultProxy

    from evolve.llm import ChatClient
    from evolve.llm._client import TOKENIZE_TIMEOUT

    assert TOKENIZE_TIMEOUT < 8
    proxy = FaultProxy(llm_server.url, mode="slow", delay=8).start()
    try:
        with ChatClient(proxy.url, llm_server.model, timeout=120, json_mode=False) as client:
            client.tokenize_cooldown = 2.0
            assert client.count_tokens(["Restart the print spooler."]) is None
            posts = proxy.posts
            assert client.count_tokens(["Restart the print spooler."]) is None and proxy.posts == posts
            time.sleep(2.5)  # the cooldown is over
            proxy.mode = "pass"
            (n,) = client.count_tokens(["Restart the print spooler."])
            assert n > 0 and proxy.posts == posts + 1
    finally:
        proxy.stop()


# ------------------------------------------------------------------------------------------------ checking
def test_check_answer_worked_examples():
    lines = not_found_lines("1").values()
    # three passages: [7] points to none (removed, counted 1); "[1, 9]" keeps 1 and drops 9 (counted 1);
    # "[1]" after the full stop belongs to the sentence before; "Also reboot." cites nothing: flagged, kept
    c = check_answer("Restart the spooler. [1] Check the network [7]. Retry [1, 9]. Also reboot.", 3, lines)
    assert c.text == "Restart the spooler. [1] Check the network. Retry [1]. Also reboot."
    assert c.cited == [1] and c.removed_markers == 2 and not c.refused and c.grounded
    assert c.unsupported_sentences == ["Check the network.", "Also reboot."]
    # no valid citation at all: grounded false, every sentence listed, nothing dropped
    c = check_answer("The printer is offline [4]. Restart it.", 3, lines)
    assert c.text == "The printer is offline. Restart it." and c.cited == [] and not c.grounded
    assert c.removed_markers == 1 and c.unsupported_sentences == ["The printer is offline.", "Restart it."]
    # a list of markers, several passages, a Markdown list: every line checked on its own
    c = check_answer("Steps:\n- Open the portal [2][3].\n- Follow the link [3].", 3, lines)
    assert c.cited == [2, 3] and c.unsupported_sentences == ["Steps:"] and c.removed_markers == 0
    # Korean, split by kiwipiepy: "[1, 9]" after the full stop goes back to the sentence before as "[1]"
    c = check_answer("인증서를 다시 발급받으세요 [1]. 그리고 클라이언트를 재시작하세요. [1, 9] 모르겠어요.", 3, lines)
    assert c.text == "인증서를 다시 발급받으세요 [1]. 그리고 클라이언트를 재시작하세요. [1] 모르겠어요."
    assert c.cited == [1] and c.removed_markers == 1 and c.unsupported_sentences == ["모르겠어요."]


def test_check_answer_leaves_markers_in_code_alone():
    """A bracketed number inside code (`inline` or a ``` block) is an index, not a citation: not removed, not
    counted, not cited. Three passages (one for the fenced case)."""
    lines = not_found_lines("1").values()
    # "a[2]" in inline code cites nothing: only [1] is a citation
    c = check_answer("Run `x = a[2]` then restart [1].", 3, lines)
    assert c.text == "Run `x = a[2]` then restart [1]." and c.cited == [1] and c.removed_markers == 0
    # "arr[0]" in inline code: 0 points to no passage, but it is no marker either: the code stays whole
    c = check_answer("Use `arr[0]` here [1].", 3, lines)
    assert c.text == "Use `arr[0]` here [1]." and c.removed_markers == 0 and c.cited == [1]
    # a fenced block: its "a[3]" (one passage given) stays; the code line cites nothing, so it is flagged as it
    # stands in the answer; the fence lines hold no words and are no sentence
    c = check_answer("Run this [1]:\n```\nx = a[3]\n```", 1, lines)
    assert c.text == "Run this [1]:\n```\nx = a[3]\n```" and c.removed_markers == 0 and c.cited == [1]
    assert c.unsupported_sentences == ["x = a[3]"]


def test_check_answer_reads_full_width_brackets_and_ranges():
    """Three passages. Full-width brackets (［1］, 【2】) and digits (２) are markers, written back as ASCII [n] (a
    rewritten marker is one [n] per passage, the prompt's own style);
    a range [a-b] (or –) is every number from a to b: [1-2] cites 1 and 2; [2–5] cites 2 and 3, and 4 and 5
    point to no passage (removed, counted 2); 【7】 points to none (removed, counted 1)."""
    lines = not_found_lines("1").values()
    c = check_answer("Restart the spooler ［1］. Check the cable 【２】.", 3, lines)
    assert c.text == "Restart the spooler [1]. Check the cable [2]." and c.cited == [1, 2] and c.removed_markers == 0
    assert c.unsupported_sentences == []
    c = check_answer("Open the portal [1-2]. Follow the link [2–5]. Ask IT 【7】.", 3, lines)
    assert c.text == "Open the portal [1][2]. Follow the link [2][3]. Ask IT."
    assert c.cited == [1, 2, 3] and c.removed_markers == 3 and c.unsupported_sentences == ["Ask IT."]


def test_check_answer_does_not_flag_list_numbers_as_sentences():
    """A numbered list: "1." and "2." are the items' numbers, not sentences of their own; the item without a
    citation is flagged whole ("3. Check the cable.")."""
    lines = not_found_lines("1").values()
    c = check_answer("1. Open the portal [1].\n2. Click reset [2].\n3. Check the cable.", 2, lines)
    assert c.cited == [1, 2] and c.removed_markers == 0
    assert c.unsupported_sentences == ["3. Check the cable."]


def test_refusal_is_the_fixed_line_at_the_start_after_whitespace_normalisation():
    lines = list(not_found_lines("1").values())
    assert is_refusal("  The answer  is not\nin these documents. Sorry.", lines)
    assert is_refusal(KO_LINE + " [1]", lines)
    assert not is_refusal("Sorry. The answer is not in these documents.", lines)  # not at the start
    assert not is_refusal("The answer is not in these documents", lines)  # exact: the full stop is part of it
    c = check_answer("The answer is not in these documents. [2]", 3, lines, refusal_text=KO_LINE)
    assert c.refused and c.grounded and c.text == KO_LINE and c.cited == [] and c.unsupported_sentences == []


# ------------------------------------------------------------------------------------------------ the passage step
def _chunked_corpus(tmp_path: Path) -> Path:
    """Two documents. 'long' is cut into one chunk per sentence (chunking: sentences, size 16 MiniLM tokens)."""
    folder = tmp_path / "corpus"
    (folder / "docs").mkdir(parents=True, exist_ok=True)
    long = ("Coffee machines need descaling every month. The kitchen has two fridges. Printers jam when the "
            "paper is damp. The office closes at six. Descaling uses citric acid and hot water.")
    (folder / "docs" / "long.md").write_text(f"# Office guide\n{long}\n", encoding="utf-8")
    (folder / "docs" / "short.md").write_text("# Descaling kettles\nKettles need descaling too.\n", encoding="utf-8")
    return folder


CHUNKED = {"chunking": {"strategy": "sentences", "size": 16, "overlap": 0}, "sparse": {"tokenizer": "english"}}


def test_retrieve_passages_gives_the_chunks_behind_each_document_with_raw_scores(tmp_path):
    """BM25 alone on a chunked corpus, query "descaling": only chunks holding the term are hits; in 'long' two
    sentences hold it (the first and the last), in different chunks with chunks between them, so its passage is
    the one, " … ", the other. Each chunk's raw score is exactly the BM25 index's own score for it; the
    document's raw score is the best of its chunks."""
    from evolve.datasets import load_dataset
    from evolve.pipeline import Pipeline

    ds = load_dataset(str(_chunked_corpus(tmp_path)))
    cfg = PipelineConfig.model_validate({**CHUNKED, "retrieval": {"mode": "sparse"}})
    pipe = Pipeline(cfg, ds)
    (ret,) = pipe.retrieve_passages(["descaling"], 5)
    texts = {(c.doc_id, c.index): c.text for c in pipe.chunks}
    with_term = sorted(key for key, t in texts.items() if "descal" in t.lower())
    assert ret.retrievers == ("sparse",) and ret.chunked
    assert {d.doc_id for d in ret.docs} == {"long", "short"}
    by_doc = {d.doc_id: d for d in ret.docs}
    assert sorted((d, c.index) for d in by_doc for c in by_doc[d].chunks) == with_term
    # the scores are the BM25 index's own, chunk by chunk
    scores, ids = pipe._sparse.search(["descaling"], len(pipe.chunks))
    own = {(pipe.chunks[i].doc_id, pipe.chunks[i].index): float(s) for s, i in zip(scores[0], ids[0]) if i >= 0}
    for d in ret.docs:
        for c in d.chunks:
            assert c.scores == {"sparse": pytest.approx(own[(d.doc_id, c.index)])}
        assert d.raw_score("sparse") == pytest.approx(max(own[(d.doc_id, c.index)] for c in d.chunks))
        assert d.raw_score("dense") is None
    long_chunks = [c.index for c in by_doc["long"].chunks]
    assert len(long_chunks) == 2 and long_chunks[1] - long_chunks[0] > 1  # not neighbours: a gap between them
    doc = ds.corpus["long"]
    assert by_doc["long"].passage(doc) == texts[("long", long_chunks[0])] + " … " + texts[("long", long_chunks[1])]
    # the ranking is search_texts's
    ranked = pipe.search_texts(["descaling"])[0]
    assert [d.doc_id for d in ret.docs] == sorted(ranked, key=lambda x: (-ranked[x], x))[:5]
    assert [d.rank for d in ret.docs] == [1, 2]


def test_retrieve_passages_hybrid_carries_dense_cosines_and_bm25_scores(tmp_path):
    """Hybrid on whole documents: each document's one chunk carries the dense score the faiss index gives (the
    cosine of normalised MiniLM vectors, recomputed here from the embedder itself) where the dense search found
    it, and its BM25 score where BM25 found it; the passage of a whole document is its text without the title."""
    from evolve.datasets import load_dataset
    from evolve.embedders import EmbedderPool
    from evolve.pipeline import Pipeline

    ds = load_dataset(str(_chunked_corpus(tmp_path)))
    cfg = PipelineConfig.model_validate({"retrieval": {"mode": "hybrid"}})
    pool = EmbedderPool()
    try:
        pipe = Pipeline(cfg, ds, embedders=pool)
        (ret,) = pipe.retrieve_passages(["descaling kettles"], 2)
        emb = pool.get(cfg.embedding)
        q = emb.embed(["descaling kettles"], kind="query")[0]
        docs = emb.embed([ds.corpus[d].full_text for d in ("long", "short")], kind="document")
    finally:
        pool.close()
    cos = dict(zip(("long", "short"), (float(np.dot(q, v)) for v in docs)))
    assert ret.retrievers == ("dense", "sparse") and not ret.chunked
    for d in ret.docs:
        (chunk,) = d.chunks
        assert chunk.scores["dense"] == pytest.approx(cos[d.doc_id], abs=1e-5)
        assert d.passage(ds.corpus[d.doc_id]) == ds.corpus[d.doc_id].text
    # both documents hold "descaling": BM25 found both
    assert all("sparse" in d.chunks[0].scores for d in ret.docs)
    # answer.min_score reads the raw first-stage score, never the fused one (the sparse-only refusal test cannot
    # tell them apart: there the final score is the BM25 score). RRF (rrf_k 60) gives a document at most
    # 1/61 + 1/61 = 0.0328, far under the cosines; a floor just under the best cosine lets the LLM be asked (the
    # score read is that cosine), one just over it refuses; min_score_on "sparse" reads the best BM25 score
    from evolve.answer import Answerer
    from evolve.config import AnswerConfig

    best_cos, best_bm25 = max(cos.values()), max(d.chunks[0].scores["sparse"] for d in ret.docs)
    assert max(d.score for d in ret.docs) <= 2 / 61 + 1e-9 < best_cos

    def floor(score, on="auto"):
        answerer = Answerer(AnswerConfig(tokenizer="whitespace", min_score=score, min_score_on=on))
        return answerer.prepare("descaling kettles?", ret, ds.corpus)

    ok = floor(best_cos - 1e-4)
    assert ok.refusal is None and ok.best_score == pytest.approx(best_cos, abs=1e-5)
    assert floor(best_cos + 1e-4).refusal == "min_score"
    assert floor(best_bm25 - 1e-4, "sparse").refusal is None and floor(best_bm25 + 1e-4, "sparse").refusal == "min_score"


def test_merge_chunks_writes_an_overlap_once():
    from evolve.passages import merge_chunks

    # neighbours 0 and 1 share "the quick fox" (overlap), 1 and 3 are not neighbours
    chunks = [(3, "Last words here."), (0, "Once upon a time the quick fox"), (1, "the quick fox jumped over.")]
    assert merge_chunks(chunks, dedupe_overlap=True) == ("Once upon a time the quick fox jumped over. … "
                                                         "Last words here.")
    # without an overlap setting the neighbours are joined as they are
    assert merge_chunks(chunks[1:], dedupe_overlap=False) == ("Once upon a time the quick fox the quick fox jumped "
                                                              "over.")
    # a shared piece that is not whole words is not an overlap ("ox" ends "fox" and starts "oxen")
    assert merge_chunks([(0, "the fox"), (1, "oxen run")], dedupe_overlap=True) == "the fox oxen run"


# ------------------------------------------------------------------------------------------------ refusal before the LLM
def _retrieval(tmp_path, query: str, mode: str = "sparse"):
    from evolve.datasets import load_dataset
    from evolve.pipeline import Pipeline

    ds = load_dataset(str(_chunked_corpus(tmp_path)))
    cfg = PipelineConfig.model_validate({"retrieval": {"mode": mode}, "sparse": {"tokenizer": "english"}})
    return Pipeline(cfg, ds).retrieve_passages([query], 5)[0], ds


def test_refusals_that_need_no_llm(tmp_path):
    """No LLM is configured (client None): a refusal decided before the LLM needs none."""
    from evolve.answer import Answerer
    from evolve.config import AnswerConfig

    # BM25 finds nothing for a word no document holds: retrieval returned nothing
    empty, ds = _retrieval(tmp_path, "zyzzyva")
    assert empty.docs == []
    ans = Answerer(AnswerConfig(tokenizer="whitespace"))
    res = ans.finish(prep := ans.prepare("zyzzyva?", empty, ds.corpus), None)
    assert prep.refusal == "no_passages" and prep.messages is None
    assert res.refused and res.answer == EN_LINE and res.citations == [] and res.refusal == "no_passages"
    # min_score on BM25: "descaling" scores under 100 in every chunk here, so 100 refuses in Korean, 0.001 does not
    hits, ds = _retrieval(tmp_path, "descaling")
    best = max(d.raw_score("sparse") for d in hits.docs)
    assert 0.001 < best < 100
    ans = Answerer(AnswerConfig(tokenizer="whitespace", min_score=100))
    prep = ans.prepare("디스케일링은 어떻게 하나요", hits, ds.corpus)
    res = ans.finish(prep, None)
    assert prep.refusal == "min_score" and prep.best_score == pytest.approx(best) and res.answer == KO_LINE
    assert res.language == "ko" and len(prep.passages) == 2  # the passages are still shown
    ok = Answerer(AnswerConfig(tokenizer="whitespace", min_score=0.001)).prepare("descaling?", hits, ds.corpus)
    assert ok.refusal is None and ok.messages is not None and "[1]" in ok.messages[1]["content"]
    # a dense floor on a sparse-only champion is a configuration error, in one line
    expect_one_line(lambda: Answerer(AnswerConfig(tokenizer="whitespace", min_score=0.5, min_score_on="dense"))
                    .prepare("descaling?", hits, ds.corpus),
                    "answer.min_score_on: expected a retriever the champion runs (sparse), got 'dense'")


# ------------------------------------------------------------------------------------------------ config identity
def test_answer_section_is_outside_every_retrieval_identity(tmp_path):
    """An answer.* change leaves the config fingerprint, config_version, the search space's hash, the study
    identity and every cache key as they were: a second pipeline whose config differs only in `answer` embeds
    nothing and hits the cache for every vector."""
    from evolve.cache import EmbeddingCache
    from evolve.datasets import load_dataset
    from evolve.pipeline import Pipeline
    from evolve.search_space import load_search_space
    from evolve.serve import config_version
    from evolve.study import study_identity

    base = PipelineConfig()
    other = apply_overrides(base, ["answer.base_url=http://10.0.0.5:8000/v1", "answer.model=qwen2.5-7b",
                                   "answer.context_tokens=4000", "answer.min_score=0.4", "answer.tokenizer=smollm2"])
    assert other.answer.model == "qwen2.5-7b" and other.to_dict() != base.to_dict()
    assert other.fingerprint() == base.fingerprint()
    assert config_version(other.fingerprint(), "c") == config_version(base.fingerprint(), "c")
    s1 = load_search_space(None)
    s2 = load_search_space(None, overrides=["answer.model=qwen2.5-7b", "answer.context_tokens=4000"])
    assert s2.hash() == s1.hash()
    assert study_identity(s2, ("ndcg@10",), dataset="d") == study_identity(s1, ("ndcg@10",), dataset="d")
    assert s2.start_config().answer.model == "qwen2.5-7b"  # ...while the trials still carry it
    ds = load_dataset(str(_chunked_corpus(tmp_path)))
    hybrid = apply_overrides(base, ["retrieval.mode=hybrid"])
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    try:
        first = Pipeline(hybrid, ds, cache=cache).prepare()
        assert first.stats.n_embedded == 2
        second = Pipeline(apply_overrides(hybrid, ["answer.model=other", "answer.max_passages=3"]), ds,
                          cache=cache).prepare()
        assert second.stats.n_embedded == 0 and second.stats.hit_rate == 1.0
    finally:
        cache.close()


def test_answer_config_refuses_bad_values_in_one_line():
    base = PipelineConfig()
    expect_one_line(lambda: apply_overrides(base, ["answer.modle=x"]), "unknown config key 'answer.modle'",
                    "did you mean 'model'")
    expect_one_line(lambda: apply_overrides(base, ["answer.base_url=ftp://x"]), "answer.base_url",
                    "expected an http(s) URL")
    msg = expect_one_line(lambda: apply_overrides(base, ["answer.base_url=http://u:hunter2@h:8000/v1"]),
                          "answer.base_url", "without a password", "api_key_env")
    assert "hunter2" not in msg
    expect_one_line(lambda: apply_overrides(base, ["answer.prompt_version=7"]), "expected one of 1, got '7'")
    expect_one_line(lambda: apply_overrides(base, ["answer.context_tokens=10"]), "answer.context_tokens")
    expect_one_line(lambda: get_tokenizer("minlm"), "answer.tokenizer", "got 'minlm'", "did you mean 'minilm'",
                    exc=ConfigError)


def test_promotion_and_rollback_keep_the_serving_answer_section(tmp_path):
    """The champion's answer section (which LLM answers) stays through a promotion and a rollback; only the
    retrieval sections change."""
    from evolve.config import config_to_yaml
    from evolve.promote import Verdict, current_champion, promote, rollback
    from evolve.workspace import Workspace

    ws = Workspace(tmp_path / "ws").ensure()
    served = apply_overrides(PipelineConfig(), ["answer.base_url=http://gpu:8000/v1", "answer.model=qwen"])
    ws.champion_path.write_text(config_to_yaml(served), encoding="utf-8")
    candidate = apply_overrides(PipelineConfig(), ["retrieval.mode=sparse"])
    verdict = Verdict("ndcg@10", float("nan"), float("nan"), None, None, True)  # forced below: no test needed
    promote(ws, candidate, verdict, trial=1, mlflow_run_id=None, study="s", holdout_fingerprint="h",
            report_metrics=None, forced=True)
    now, _ = current_champion(ws)
    assert now.retrieval.mode == "sparse" and now.answer.model == "qwen" and now.answer.base_url == "http://gpu:8000/v1"
    # the answer section changed by hand after the promotion stays through a rollback too
    ws.champion_path.write_text(config_to_yaml(apply_overrides(now, ["answer.model=llama"])), encoding="utf-8")
    rollback(ws)
    back, _ = current_champion(ws)
    assert back.retrieval.mode == "dense" and back.answer.model == "llama"


# ------------------------------------------------------------------------------------------------ tokenizers
def test_local_tokenizers_by_name_and_by_path(tmp_path):
    minilm = get_tokenizer("minilm")
    assert minilm.name == "local:minilm"
    # WordPiece, lower-cased: "offline" -> "off", "##line"; no [CLS]/[SEP] counted
    assert minilm.count("Printer offline") == 3
    assert get_tokenizer("whitespace").count_many(["a b  c", ""]) == [3, 0]
    from evolve.embedders import resolve_model_path

    folder = resolve_model_path("all-MiniLM-L6-v2")
    assert get_tokenizer(str(folder)).count("Printer offline") == 3  # a folder holding tokenizer.json
    assert get_tokenizer(str(folder / "tokenizer.json")).count("Printer offline") == 3
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json", encoding="utf-8")
    expect_one_line(lambda: get_tokenizer(str(bad)), "answer.tokenizer: expected a Hugging Face tokenizer.json")


# ------------------------------------------------------------------------------------------------ the SSE reader
def test_sse_reader_on_vllm_and_ollama_lines():
    from evolve.llm import LLMError, SSEReader, StreamResult

    def chunk(content=None, finish=None, usage=None, choices=True):
        body = {"id": "x", "object": "chat.completion.chunk",
                "choices": ([{"index": 0, "delta": {} if content is None else {"content": content},
                              "finish_reason": finish}] if choices else [])}
        if usage is not None:
            body["usage"] = usage
        return "data: " + json.dumps(body)

    res = StreamResult()
    r = SSEReader(res, "LLM endpoint http://x/v1")
    lines = [": keep-alive", chunk(""), "", chunk("Hello"), "", chunk(" world"), "", chunk(finish="stop"), "",
             chunk(choices=False, usage={"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}), "",
             "data: [DONE]", ""]
    assert [r.feed(line) for line in lines] == ["", "", "", "Hello", "", " world", "", "", "", "", "", "", ""]
    assert res.text == "Hello world" and res.finish_reason == "stop" and res.done and res.pieces == 2
    assert res.usage == {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}
    # the server giving up mid-answer, and a line that is not JSON: one-line errors, kind "broken"
    with pytest.raises(LLMError) as info:
        SSEReader(StreamResult(), "LLM endpoint http://x/v1").feed('data: {"error": {"message": "engine dead"}}')
    assert info.value.kind == "broken" and "engine dead" in str(info.value)
    with pytest.raises(LLMError):
        bad = SSEReader(StreamResult(), "LLM endpoint http://x/v1")
        bad.feed("data: {oops")
        bad.feed("")  # the blank line that ends the event: its data is no JSON


def test_sse_reader_joins_an_event_split_over_data_lines():
    """Server-sent events let one event's data span several `data:` lines, joined by a newline up to the blank line
    that ends the event. A chunk sent over two lines is one JSON object: its text "Hi" comes once the object is
    whole; a one-line chunk after it still reads at once; data that is still no JSON when the event ends (or the
    stream closes) is the one-line error of kind "broken"."""
    from evolve.llm import LLMError, SSEReader, StreamResult

    res = StreamResult()
    r = SSEReader(res, "LLM endpoint http://x/v1")
    lines = ['data: {"choices": [{"index": 0,', 'data:  "delta": {"content": "Hi"}}]}', "",
             'data: {"choices": [{"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"}]}', "",
             "data: [DONE]", ""]
    assert [r.feed(line) for line in lines] == ["", "Hi", "", "!", "", "", ""]
    assert res.text == "Hi!" and res.pieces == 2 and res.finish_reason == "stop" and res.done
    cut = SSEReader(StreamResult(), "LLM endpoint http://x/v1")
    assert cut.feed('data: {"choices": [') == ""
    with pytest.raises(LLMError) as info:
        cut.close()
    assert info.value.kind == "broken" and "not JSON" in str(info.value)


# ------------------------------------------------------------------------------------------------ streaming client
def test_stream_cancel_closes_the_connection_and_errors_never_show_the_key(llm_server, monkeypatch):
    """The blocking stream (what `evolve answer eval` uses) through the fault proxy (a stand-in relaying the real
    server): the key from answer.api_key_env reaches the server as a bearer; cancel() from another thread ends the
    iteration (kind "cancelled") and the proxy sees evolve's connection close; an unreachable LLM and an HTTP 500
    are one-line errors of their kind that never show the key."""
    import threading

    from fault_proxy import FaultProxy

    from evolve._servers import free_port
    from evolve.llm import ChatClient, LLMError

    secret = "sk-answer-SECRET-4417"
    monkeypatch.setenv("EVOLVE_TEST_LLM_KEY", secret)
    proxy = FaultProxy(llm_server.url, mode="pass").start()
    try:
        client = ChatClient(proxy.url, llm_server.model, api_key_env="EVOLVE_TEST_LLM_KEY", json_mode=False,
                            key_field="answer.api_key_env")
        stream = client.stream([{"role": "user", "content": "Count from one to fifty."}], max_tokens=64)
        got, first = [], threading.Event()

        def read():
            try:
                for piece in stream:
                    got.append(piece)
                    first.set()
            except LLMError as err:
                got.append(err)
            first.set()

        reader = threading.Thread(target=read)
        reader.start()
        assert first.wait(120)
        stream.cancel()
        reader.join(60)
        assert isinstance(got[-1], LLMError) and got[-1].kind == "cancelled", got
        assert proxy.authorization == f"Bearer {secret}"
        assert proxy.closed.wait(30) and proxy.client_closed == 1
        proxy.mode = "error500"
        with pytest.raises(LLMError) as info:
            list(client.stream([{"role": "user", "content": "hi"}], max_tokens=4))
        assert info.value.kind == "unreachable" and "HTTP 500" in str(info.value) and secret not in str(info.value)
        client.close()
    finally:
        proxy.stop()
    dead = ChatClient(f"http://127.0.0.1:{free_port()}/v1", "m", api_key_env="EVOLVE_TEST_LLM_KEY", stream_retries=0)
    with pytest.raises(LLMError) as info:
        list(dead.stream([{"role": "user", "content": "hi"}]))
    assert info.value.kind == "unreachable" and "connection refused" in str(info.value)
    assert "\n" not in str(info.value) and secret not in str(info.value)
    expect_one_line(lambda: ChatClient("http://127.0.0.1:9/v1", "m", api_key_env="EVOLVE_NO_SUCH_KEY_VAR",
                                       key_field="answer.api_key_env"),
                    "answer.api_key_env: expected the environment variable EVOLVE_NO_SUCH_KEY_VAR")


def test_a_server_that_refuses_stream_options_is_asked_again_without_them(llm_server):
    """A server that does not take `stream_options` (HTTP 400 naming it; the proxy, a stand-in, plays one in front
    of the real server): the stream is asked again at once without the field and gets the real answer; the client
    remembers, so its next stream (on an event loop this time) goes without it in one attempt."""
    import asyncio

    from fault_proxy import FaultProxy

    from evolve.llm import ChatClient

    proxy = FaultProxy(llm_server.url, mode="no_stream_options").start()
    try:
        client = ChatClient(proxy.url, llm_server.model, json_mode=False)
        stream = client.stream([{"role": "user", "content": "Say hi."}], max_tokens=4)
        list(stream)
        assert stream.result.done and stream.result.attempts == 2
        assert "stream_options" in proxy.payloads[-2] and "stream_options" not in proxy.payloads[-1]
        posts = proxy.posts

        async def again():
            s = client.astream([{"role": "user", "content": "Say hi."}], max_tokens=4)
            async for _ in s:
                pass
            await s.aclose()
            await client.aclose()
            return s.result

        result = asyncio.run(again())
        assert result.done and result.attempts == 1 and proxy.posts == posts + 1
        assert "stream_options" not in proxy.payloads[-1]
    finally:
        proxy.stop()
