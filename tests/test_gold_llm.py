"""Issue 13: gold written and judged by an LLM: prompts, JSON repair, filters, sampling, provenance, and the real
chain against a served model.

The model is SmolLM2-135M-Instruct served for real by ``vllm serve`` (tests/llm_server.py, one server per session).
It is tiny and English-centric: these tests prove plumbing (prompts, parsing, repair, filters, provenance,
judging), not the quality of its questions or grades. The fault cases put tests/fault_proxy.py (a STAND-IN for a
faulty endpoint: it answers 500, answers late, garbles a reply or dies) in front of the real server.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path

import pytest
from conftest import expect_one_line, run_cli
from fault_proxy import FaultProxy

from evolve.datasets import Dataset, Document
from evolve.gold import read_gold
from evolve.gold._filters import FILTERS, Candidate, FilterSettings, apply_filters, content_overlap, jaccard, word_set
from evolve.gold._passages import passages_of, sample_passages
from evolve.gold.prompts import load_prompt
from evolve.llm import parse_json_object

SECRET = "sk-gold-SECRET-7321"

EN_DOCS = {
    "vpn": ("Resetting your VPN password",
            "If the VPN client rejects your password after the quarterly rotation, open the self-service portal and "
            "choose Forgot password. A reset link is sent to your company mail and expires after thirty minutes. "
            "The new password must differ from the last five and is synchronised to the VPN gateway within ten "
            "minutes, so wait before you reconnect."),
    "printer": ("Third floor printer jams",
                "The shared printer on the third floor jams when thick card stock is fed from tray two. Use the manual "
                "feed slot for anything heavier than 160 gsm, and clear a jam by opening the rear panel rather than "
                "pulling paper out of the front, which tears the sheet and leaves fragments on the fuser roller."),
    "expenses": ("Travel expense claims",
                 "Travel expenses are claimed in the finance tool within sixty days of the trip. Attach an itemised "
                 "receipt for every amount above twenty euros; hotel bills must show the nightly rate. Claims without "
                 "receipts are returned to the employee, and the manager approves each claim before payment."),
    "deploy": ("Release freeze before holidays",
               "No production deployment is allowed during the release freeze that starts five working days before a "
               "public holiday. Urgent fixes need approval from the on-call engineering manager and a rollback plan "
               "written into the change ticket before the deployment window opens."),
}
KO_DOCS = {
    "ko-vpn": ("VPN 비밀번호 재설정",
               "분기마다 비밀번호가 바뀐 뒤 VPN 접속이 거부되면 셀프서비스 포털에서 비밀번호 찾기를 누르세요. 회사 메일로 "
               "재설정 링크가 발송되며 링크는 삼십 분 뒤에 만료됩니다. 새 비밀번호는 최근 다섯 개와 달라야 하고 약 십 분 "
               "안에 VPN 게이트웨이에 반영되므로 잠시 기다린 뒤 다시 접속하세요."),
    "ko-leave": ("연차 휴가 신청 절차",
                 "연차 휴가는 인사 시스템에서 최소 사흘 전에 신청해야 합니다. 팀장이 승인하면 일정이 팀 캘린더에 자동으로 "
                 "등록되고, 반차는 오전과 오후 중에서 고를 수 있습니다. 남은 연차 일수는 인사 시스템의 내 정보 화면에서 "
                 "확인할 수 있습니다."),
    "ko-wifi": ("사무실 와이파이 연결 문제",
                "사무실 와이파이에 연결되지 않으면 먼저 기기의 날짜와 시간이 맞는지 확인하세요. 인증서가 만료된 노트북은 "
                "사내 포털에서 새 인증서를 내려받아 설치해야 하며, 그래도 안 되면 헬프데스크에 기기 이름과 함께 문의하세요."),
}

FULL_TEXT = {d: f"{t} {x}" for d, (t, x) in {**EN_DOCS, **KO_DOCS}.items()}


def team_corpus(tmp_path: Path, docs: dict | None = None) -> Path:
    """A small BEIR folder of English and Korean helpdesk pages (one placeholder query: the loaders want one)."""
    docs = docs if docs is not None else {**EN_DOCS, **KO_DOCS}
    folder = tmp_path / "team"
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for doc_id, (title, text) in docs.items():
            fh.write(json.dumps({"_id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
    first = next(iter(docs))
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q0", "text": "placeholder"}) + "\n", encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text(f"query-id\tcorpus-id\tscore\nq0\t{first}\t1\n", encoding="utf-8")
    return folder


def in_memory(docs: dict, metadata: dict | None = None) -> Dataset:
    corpus = {d: Document(d, t, x, (metadata or {}).get(d, {})) for d, (t, x) in docs.items()}
    return Dataset("team", "memory", corpus, {}, {"test": {}})


# ----------------------------------------------------------------------------- prompts


def test_prompts_render_in_the_passage_language_with_a_version_and_hash():
    from importlib import resources

    en, ko = load_prompt("generate", "en"), load_prompt("generate", "ko")
    passage_en, passage_ko = EN_DOCS["vpn"][1], KO_DOCS["ko-vpn"][1]
    m_en = en.render(passage=passage_en, kind=en.kinds["how-to"])
    m_ko = ko.render(passage=passage_ko, kind=ko.kinds["factual"])
    assert [m["role"] for m in m_en] == ["system", "user"]
    assert passage_en in m_en[1]["content"] and en.kinds["how-to"] in m_en[1]["content"]
    assert "do not copy" in m_en[1]["content"] and '{"question"' in m_en[1]["content"]
    assert passage_ko in m_ko[1]["content"] and "한국어로" in m_ko[1]["content"] and "베끼지 말고" in m_ko[1]["content"]
    assert set(en.kinds) == set(ko.kinds) == {"factual", "how-to", "conceptual"}
    assert (en.version, ko.version) == ("generate-en/1", "generate-ko/1")
    import hashlib

    raw = (resources.files("evolve.gold.prompts") / "generate.ko.yaml").read_bytes()
    assert ko.sha256 == hashlib.sha256(raw).hexdigest() != en.sha256
    judge = load_prompt("judge", "ko")  # no Korean judge prompt: the English UMBRELA one, query and passage as they are
    assert judge.lang == "en" and judge.grades == ("0", "1", "2", "3") and judge.version.startswith("umbrela")
    text = judge.render(query="연차 신청은 언제까지?", passage=passage_ko)[1]["content"]
    assert "연차 신청은 언제까지?" in text and passage_ko in text and "single digit" in text
    assert "2406.06519" in (resources.files("evolve.gold.prompts") / "judge.en.yaml").read_text(encoding="utf-8")
    with pytest.raises(KeyError):
        en.render(passage="x")  # a missing value is an error, never an empty slot


# ----------------------------------------------------------------------------- JSON repair


@pytest.mark.parametrize(
    "text, expected, how",
    [
        ('{"question": "How do I reset it?"}', {"question": "How do I reset it?"}, "ok"),
        ('```json\n{"question": "q1"}\n```', {"question": "q1"}, "fenced"),
        ('Sure! Here it is: {"question": "q {braces} inside", "answer": "a"} Hope it helps.',
         {"question": "q {braces} inside", "answer": "a"}, "extracted"),
        ('{"question": "q2", "answer": "a",}', {"question": "q2", "answer": "a"}, "repaired"),
        ("{'question': 'q3'}", {"question": "q3"}, "repaired"),
        ('{"question": "How long is the reset link valid?", "answer": "thirty min',
         {"question": "How long is the reset link valid?", "answer": "thirty min"}, "repaired"),  # cut at max_tokens
        ('```\n{"question": "q4",\n```', {"question": "q4"}, "repaired"),
        ('{"question": "first"} {"question": "second"}', {"question": "first"}, "extracted"),
        ("I cannot write a question for this passage.", None, "failed"),
        ("", None, "failed"),
        ("[1, 2, 3]", None, "failed"),
    ],
)
def test_json_repair_cases(text, expected, how):
    assert parse_json_object(text) == (expected, how)


# ----------------------------------------------------------------------------- filters


def _one(question, passage=EN_DOCS["vpn"][1], lang="en", answer=None):
    cand = Candidate(question, passage, lang, answer)
    counts = apply_filters([cand], FilterSettings())
    assert sum(counts.values()) == 1
    return cand.rejected_by


@pytest.mark.parametrize(
    "question, answer, expected",
    [
        ("Where do I get a new VPN login after the quarterly change?", None, None),
        (None, None, "malformed"),
        ("   ", None, "malformed"),
        ("NONE", None, "unanswerable"),
        ("What happens to an expired reset link?", "I don't know", "unanswerable"),
        ("Which port does the gateway use?", "The passage does not say; not mentioned", "unanswerable"),
        ("VPN password?", None, "too_short"),
        ("This is about what exactly?", None, "dangling_reference"),
        ("It expires when?", None, "dangling_reference"),
        ("What does that paper recommend for VPN users?", None, "dangling_reference"),
        ("According to the passage, where is the reset link sent?", None, "dangling_reference"),
        ("How do I use it?", None, "dangling_reference"),
        ("VPN 비밀번호는 어디에서 다시 설정하나요?", None, "language"),
        ("Where can I reset a VPN password when the client rejects it after rotation and wait?", None, "overlap"),
    ],
)
def test_each_filter_on_hand_made_english_examples(question, answer, expected):
    assert _one(question, answer=answer) == expected


@pytest.mark.parametrize(
    "question, expected",
    [
        ("비밀번호를 바꾼 뒤 원격 접속이 막히면 어떻게 하나요?", None),
        ("없음", "unanswerable"),
        ("이 질문에는 답을 알 수 없습니다", "unanswerable"),
        ("VPN?", "too_short"),
        ("이것은 언제 만료되나요?", "dangling_reference"),
        ("그것을 어디서 신청하나요?", "dangling_reference"),
        ("이 문서에서 말하는 링크 유효 시간은?", "dangling_reference"),
        ("How do I reset the VPN password after rotation?", "language"),
        ("VPN 접속 거부 비밀번호 셀프서비스 포털 비밀번호 찾기 회사 메일 재설정 링크 발송?", "overlap"),
    ],
)
def test_each_filter_on_hand_made_korean_examples(question, expected):
    assert _one(question, passage=KO_DOCS["ko-vpn"][1], lang="ko") == expected


def test_korean_duplicates_and_overlap_are_measured_on_kiwi_morphemes():
    a, b = "VPN 비밀번호를 재설정하려면 어떻게 하나요?", "VPN 비밀번호는 재설정하려면 어떻게 하나요"
    wa, wb = word_set(a), word_set(b)
    assert "비밀번호" in wa and "를" in wa and "는" in wb  # morphemes, not space-separated words
    assert jaccard(wa, wb) >= 0.8  # the same question with another particle
    assert jaccard(set(a.split()), set(b.split())) < 0.5  # words alone would miss it
    cands = [Candidate(a, KO_DOCS["ko-vpn"][1], "ko"), Candidate(b, KO_DOCS["ko-vpn"][1], "ko")]
    counts = apply_filters(cands, FilterSettings(max_overlap=1.0))
    assert counts["kept"] == 1 and counts["duplicate"] == 1 and cands[1].rejected_by == "duplicate"
    assert cands[1].verdicts["duplicate"]["value"] >= 0.8
    # overlap counts content morphemes: a paraphrase shares few, a copy all
    assert content_overlap("원격 접속이 안 될 때 암호를 새로 만드는 법", KO_DOCS["ko-vpn"][1]) < 0.5
    assert content_overlap("셀프서비스 포털 비밀번호 찾기", KO_DOCS["ko-vpn"][1]) == 1.0


def test_filter_counts_add_up_and_every_verdict_is_recorded():
    passage = EN_DOCS["printer"][1]
    cands = [Candidate(q, passage, "en") for q in [
        "Why does the office printer keep eating heavy paper?",
        "Why does the office printer keep eating heavy paper?",  # duplicate
        None,  # malformed
        "It jams?",  # too short (and dangling)
        "프린터 용지 걸림은 어떻게 해결하나요?",  # language
        "What should I do with a sheet stuck inside the copier?",
        "n/a",
    ]]
    counts = apply_filters(cands, existing_questions=["What should I do with a sheet stuck inside the copier??"])
    assert sum(counts.values()) == len(cands)
    assert counts == {"malformed": 1, "unanswerable": 1, "too_short": 1, "dangling_reference": 0, "language": 1,
                      "overlap": 0, "duplicate": 2, "kept": 1}
    assert cands[3].rejected_by == "too_short" and cands[3].verdicts["too_short"] == {"pass": False, "value": 2}
    assert cands[3].verdicts["dangling_reference"] == {"pass": False}  # every filter ran; the first failure counts
    for c in cands[:2] + cands[3:]:
        assert set(c.verdicts) == set(FILTERS)
    assert cands[2].verdicts == {"malformed": {"pass": False}}


# ----------------------------------------------------------------------------- sampling


def test_sampling_is_stratified_capped_per_document_and_verbatim():
    docs = {f"en{i}": (f"Page {i}", " ".join([EN_DOCS["vpn"][1]] * (1 + i % 3))) for i in range(12)}
    docs.update({f"ko{i}": (f"문서 {i}", " ".join([KO_DOCS["ko-leave"][1]] * 3)) for i in range(4)})
    meta = {d: {"path": f"{'wiki' if d.startswith('en') and int(d[2:]) % 2 else 'tickets'}/{d}.md"} for d in docs}
    ds = in_memory(docs, meta)
    picked = sample_passages(ds, 10, seed=3, max_per_doc=2)
    assert len(picked) == 10
    assert len({p.doc_id for p in picked}) == 10  # one per document before any document gets a second
    for p in picked:
        assert ds.corpus[p.doc_id].full_text[p.start:p.end] == p.text  # verbatim: survives any re-chunking
    assert {p.lang for p in picked} == {"en", "ko"}
    assert {p.stratum[1] for p in picked} == {"wiki", "tickets"}
    assert picked == sample_passages(ds, 10, seed=3, max_per_doc=2)  # seeded
    many = sample_passages(ds, 100, seed=3, max_per_doc=2)
    per_doc = {}
    for p in many:
        per_doc[p.doc_id] = per_doc.get(p.doc_id, 0) + 1
    assert max(per_doc.values()) <= 2 and len(many) == sum(min(2, len(passages_of(ds.corpus[d]))) for d in docs)
    assert {p.lang for p in sample_passages(ds, 10, seed=3, lang="ko")} == {"ko"}
    used = {(p.doc_id, p.text) for p in picked}
    assert not used & {(p.doc_id, p.text) for p in sample_passages(ds, 10, seed=3, exclude=used)}


def test_default_pool_is_bm25_dense_hybrid_and_the_champion(tmp_path):
    from evolve.config import PipelineConfig, config_to_yaml
    from evolve.gold._judge import default_pool_configs

    pool = default_pool_configs(tmp_path / "champion.yaml")  # no champion yet
    assert list(pool) == ["bm25", "dense", "hybrid"]
    assert [c.retrieval.mode for c in pool.values()] == ["sparse", "dense", "hybrid"]
    assert pool["bm25"].sparse.tokenizer == pool["hybrid"].sparse.tokenizer == "auto"  # kiwipiepy for Korean
    assert pool["hybrid"].fusion.method == "rrf"
    champion = PipelineConfig.model_validate({"retrieval": {"mode": "sparse"}, "sparse": {"k1": 1.3}})
    (tmp_path / "champion.yaml").write_text(config_to_yaml(champion))
    assert default_pool_configs(tmp_path / "champion.yaml")["champion"] == champion


# ----------------------------------------------------------------------------- the CLI without a server


def test_cli_errors_are_one_line(tmp_path, monkeypatch):
    from evolve._servers import free_port

    corpus = team_corpus(tmp_path, EN_DOCS)
    dead = f"http://127.0.0.1:{free_port()}/v1"
    base = ["gold", "generate", "--dataset", str(corpus), "--llm-model", "m", "--n", "2"]
    cases = [
        (["--out", str(tmp_path / "g"), "--llm-url", dead, "--max-retries", "0"],
         f"error: LLM endpoint {dead} failed after 0 retries: connection refused"),
        (["--out", str(tmp_path / "g"), "--llm-url", dead, "--llm-api-key-env", "EVOLVE_NO_SUCH_KEY"],
         "error: --llm-api-key-env: expected the environment variable EVOLVE_NO_SUCH_KEY to hold the API key, it is not set"),
        (["--out", str(corpus), "--llm-url", dead],
         f"error: --out {corpus}: expected a new or empty folder, or a gold folder, got a folder with other files (never replaced)"),
    ]
    for extra, line in cases:
        proc = run_cli(*base, *extra)
        assert (proc.returncode, proc.stderr.strip(), proc.stdout) == (2, line, ""), proc.stderr
    assert not (tmp_path / "g").exists()
    proc = run_cli("gold", "judge", "--gold", str(tmp_path / "nothing"), "--dataset", str(corpus), "--llm-url", dead,
                   "--llm-model", "m")
    assert (proc.returncode, proc.stderr.strip()) == (
        2, f"error: --gold {tmp_path / 'nothing'}: expected a gold folder (queries.jsonl and qrels), got none")


# ----------------------------------------------------------------------------- against the served SmolLM2


@pytest.fixture(scope="module")
def generated(llm_server, tmp_path_factory):  # noqa: F811
    """`evolve gold generate` on the mixed English/Korean corpus: all 7 passages, 48 tokens a reply, run once."""
    tmp = tmp_path_factory.mktemp("gen")
    corpus = team_corpus(tmp)
    out = tmp / "gold"
    proc = run_cli("gold", "generate", "--dataset", str(corpus), "--out", str(out), "--llm-url", llm_server.url,
                   "--llm-model", llm_server.model, "--n", "7", "--max-tokens", "48", "--concurrency", "8",
                   "--seed", "1", "--llm-api-key-env", "EVOLVE_TEST_LLM_KEY", env={"EVOLVE_TEST_LLM_KEY": SECRET})
    return corpus, out, proc


@pytest.mark.slow
@pytest.mark.vllm
def test_generate_writes_a_gold_folder_whose_counts_add_up(generated):
    corpus, out, proc = generated
    assert proc.returncode == 0, proc.stderr
    counts = json.loads((out / "report.json").read_text())["counts"]
    rejected = ", ".join(f"{counts[f]} {f}" for f in FILTERS)
    assert proc.stdout.strip() == (f"wrote {counts['kept']} generated queries to {out} (7 generated; rejected: "
                                   f"{rejected}); report: {out / 'report.md'}")
    assert sum(counts.values()) == 7 and counts["kept"] >= 1
    gold = read_gold(out)
    assert len(gold.queries) == counts["kept"]
    report = json.loads((out / "report.json").read_text())
    assert report["generated"] == 7 and report["languages"] == {"en": 4, "ko": 3}
    assert report["llm"]["requests"] == 7 + report["llm"]["retried"]
    assert report["llm"]["completion_tokens"] > 0 and report["llm"]["seconds"] > 0
    for qid, text in gold.queries.items():
        meta = gold.metadata[qid]
        assert meta["source"] == "generated" and meta["kind"] in ("factual", "how-to", "conceptual")
        assert meta["passage"] in FULL_TEXT[meta["doc_id"]]  # verbatim
        assert 0.0 <= meta["overlap"] <= 0.6
        assert gold.qrels[qid] == {meta["doc_id"]: 2}
        (rec,) = gold.provenance[qid]
        # the answer the model gave with its question is kept beside the passage as the reference answer
        said = unicodedata.normalize("NFC", rec["answer"] or "").strip()
        assert gold.answers.get(qid, []) == ([said] if said else [])
        prompt = load_prompt("generate", meta["lang"])
        assert rec["prompt"] == {"name": "generate", "lang": meta["lang"], "version": prompt.version,
                                 "sha256": prompt.sha256}
        assert rec["model"]["model"] == "smollm2-135m-instruct" and rec["model"]["owned_by"] == "vllm"
        assert rec["seed"] == 1 and isinstance(rec["request_seed"], int) and rec["question"] == text
        assert rec["llm"]["prompt_tokens"] > 0 and rec["llm"]["completion_tokens"] > 0 and rec["llm"]["seconds"] > 0
        assert set(rec["filters"]) == set(FILTERS) and all(v["pass"] for v in rec["filters"].values())
    rejected_recs = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected_recs) == 7 - counts["kept"]
    tally = {f: sum(r["rejected_by"] == f for r in rejected_recs) for f in FILTERS}
    assert tally == {f: counts[f] for f in FILTERS}
    # Korean passages: the tiny model mostly answers in English, and the language filter counts every such reply
    ko = [r for r in rejected_recs + [gold.provenance[q][0] for q in gold.queries] if r["lang"] == "ko"]
    assert ko
    for r in ko:
        if "language" in r["filters"]:
            hangul = sum("\uac00" <= ch <= "\ud7a3" for ch in r["question"])
            letters = sum(ch.isalpha() for ch in r["question"])
            assert r["filters"]["language"]["pass"] == (hangul >= 0.3 * letters > 0)
    assert (out / "overlap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Question/passage overlap" in (out / "report.md").read_text()
    for f in out.iterdir():  # the key went to the server as a bearer token, and nowhere else
        assert SECRET not in f.read_bytes().decode("utf-8", "replace")
    assert SECRET not in proc.stderr + proc.stdout


@pytest.mark.slow
@pytest.mark.vllm
def test_judge_grades_pooled_results_and_keeps_the_generated_positive(generated, llm_server, tmp_path):  # noqa: F811
    corpus, out, proc = generated
    assert proc.returncode == 0, proc.stderr
    before = read_gold(out)
    judged = tmp_path / "judged"
    # two different BM25s keep torch out of this subprocess; default_pool_configs' dense and hybrid are the same
    # Pipeline runs (test_default_pool_is_bm25_dense_hybrid_and_the_champion)
    regex = tmp_path / "bm25-regex.yaml"
    regex.write_text("retrieval: {mode: sparse}\nsparse: {tokenizer: regex, k1: 1.2, b: 0.75}\n")
    proc = run_cli("gold", "judge", "--dataset", str(corpus), "--gold", str(out), "--out", str(judged), "--llm-url",
                   llm_server.url, "--llm-model", llm_server.model, "--depth", "2", "--configs", f"bm25,{regex}",
                   "--max-passage-chars", "600", "--concurrency", "8", "--workspace", str(tmp_path / "ws"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((judged / "judge.json").read_text())
    grades = " ".join(f"{g}:{c}" for g, c in report["grades"].items())
    assert proc.stdout.strip() == (
        f"judged {report['judged']} of {report['asked']} pooled pairs for {len(before.queries)} queries (grades "
        f"{grades}; {report['unreadable']} unreadable; pooled from bm25, bm25-regex) into {judged}; "
        f"report: {judged / 'judge.md'}")
    gold = read_gold(judged)
    assert gold.queries == before.queries
    assert report["forced_choice"] is True and report["unreadable"] == 0  # vLLM forced one token among 0..3
    judgements = [r for recs in gold.provenance.values() for r in recs if r["source"] == "judged"]
    assert len(judgements) == report["asked"] >= len(before.queries)
    for r in judgements:
        assert r["grade"] in (0, 1, 2, 3) and r["llm"]["parse"] == "forced" and r["llm"]["completion_tokens"] == 1
        assert r["prompt"]["version"] == "umbrela-en/1" and r["model"]["model"] == llm_server.model
        assert set(r["pooled_by"]) <= {"bm25", "bm25-regex"} and all(1 <= k <= 2 for k in r["pooled_by"].values())
        assert gold.qrels[r["query_id"]][r["doc_id"]] == r["final_grade"]
    for qid, meta in gold.metadata.items():
        assert meta["judged"] is True
        assert gold.qrels[qid][meta["doc_id"]] >= 2  # the generated positive is kept
    assert {"report.md", "report.json", "overlap.png", "rejected.jsonl", "judge.md"} <= {p.name for p in judged.iterdir()}
    assert gold.fingerprint() != before.fingerprint() or all(len(d) == 1 for d in gold.qrels.values())
    assert read_gold(out).fingerprint() == before.fingerprint()  # --out: the source folder is untouched


@pytest.mark.slow
@pytest.mark.vllm
def test_append_adds_new_passages_and_keeps_what_the_folder_had(generated, llm_server, tmp_path):  # noqa: F811
    import shutil

    from evolve.gold._generate import GenerateOptions, generate_gold
    from evolve.llm import ChatClient

    _, previous, proc = generated
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "gold"
    shutil.copytree(previous, out)
    before = read_gold(out)
    new_doc = {"badge": ("Visitor badges", "Visitors collect a day badge at the front desk on the ground floor "
                                           "after their host confirms the visit in the booking tool; badges are "
                                           "returned at the same desk before leaving the building.")}
    ds = in_memory({**EN_DOCS, **KO_DOCS, **new_doc})
    with ChatClient(llm_server.url, llm_server.model, concurrency=2) as client:
        result = generate_gold(ds, out, client, GenerateOptions(n=3, max_tokens=48, seed=1), append=True)
    assert result.generated == 1  # every other passage is quoted by the folder already
    report = json.loads((out / "report.json").read_text())
    assert report["appended_to"] == len(before.queries) and sum(report["counts"].values()) == 1
    after = read_gold(out)
    assert set(before.queries) <= set(after.queries) and len(after.queries) == len(before.queries) + result.kept
    for q in before.queries:
        assert after.provenance[q] == before.provenance[q] and after.qrels[q] == before.qrels[q]
    new = set(after.queries) - set(before.queries)
    assert all(after.metadata[q]["doc_id"] == "badge" for q in new)
    old_rejected = (previous / "rejected.jsonl").read_text().splitlines()
    assert (out / "rejected.jsonl").read_text().splitlines()[: len(old_rejected)] == old_rejected


@pytest.mark.slow
@pytest.mark.vllm
def test_judge_takes_a_korean_gold_folder_written_for_the_test(llm_server, tmp_path):  # noqa: F811
    """The tiny model cannot write Korean questions (above: the language filter counts them), so the Korean
    chain runs on a small hand-written gold folder: BM25 with kiwipiepy pools, the UMBRELA prompt grades."""
    from evolve.gold import write_gold
    from evolve.gold._judge import JudgeOptions, default_pool_configs, judge_gold
    from evolve.llm import ChatClient

    ds = in_memory(KO_DOCS)
    queries = {"ko1": "VPN 접속이 거부될 때 비밀번호는 어디서 바꾸나요?", "ko2": "연차가 며칠 남았는지 어디서 보나요?"}
    meta = {"ko1": {"lang": "ko", "source": "imported", "doc_id": "ko-vpn"},
            "ko2": {"lang": "ko", "source": "imported", "doc_id": "ko-leave", "reviewed": True}}
    gold_dir = write_gold(tmp_path / "ko-gold", queries, {"ko1": {"ko-vpn": 1}, "ko2": {"ko-leave": 3}}, metadata=meta)
    with ChatClient(llm_server.url, llm_server.model, concurrency=4) as client:
        result = judge_gold(ds, gold_dir, client, {"bm25": default_pool_configs()["bm25"]},
                            JudgeOptions(depth=2, max_passage_chars=400))
        assert client.stats.parsed == {"forced": result.asked}
    gold = read_gold(gold_dir)
    assert result.queries == 2 and result.asked == sum(len(d) for d in gold.qrels.values())
    assert gold.qrels["ko2"]["ko-leave"] == 3  # a reviewed grade stands, whatever the model says
    assert gold.qrels["ko1"]["ko-vpn"] >= 1
    assert all(gold.metadata[q]["judged"] for q in queries)
    # judging again asks nothing: every pooled pair was judged
    with ChatClient(llm_server.url, llm_server.model) as client:
        again = judge_gold(ds, gold_dir, client, {"bm25": default_pool_configs()["bm25"]}, JudgeOptions(depth=2))
    assert again.asked == 0 and read_gold(gold_dir).fingerprint() == gold.fingerprint()


# ----------------------------------------------------------------------------- faults (through the proxy stand-in)


@pytest.fixture
def proxy(llm_server):  # noqa: F811
    made = []

    def make(mode: str, **kw) -> FaultProxy:
        p = FaultProxy(llm_server.url, mode, **kw).start()
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


def _error_line(stderr: str, retries: int | None = None) -> str:
    """The one error line (last on stderr); the lines before it are the client's retry warnings."""
    lines = stderr.strip().splitlines()
    assert all("; retry " in line for line in lines[:-1]), lines
    if retries is not None:
        assert len(lines) - 1 == retries, lines
    return lines[-1]


def _no_leftovers(folder: Path) -> None:
    assert not [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]


@pytest.mark.slow
@pytest.mark.vllm
def test_endpoint_answering_500_is_retried_then_one_line_and_nothing_written(proxy, llm_server, tmp_path):  # noqa: F811
    p = proxy("error500")  # stand-in: the real server behind it is fine, the proxy answers 500
    corpus, out = team_corpus(tmp_path, EN_DOCS), tmp_path / "gold"
    proc = run_cli("gold", "generate", "--dataset", str(corpus), "--out", str(out), "--llm-url", p.url,
                   "--llm-model", llm_server.model, "--n", "2", "--concurrency", "1", "--max-retries", "2",
                   "--llm-api-key-env", "EVOLVE_TEST_LLM_KEY", env={"EVOLVE_TEST_LLM_KEY": SECRET})
    assert proc.returncode == 2
    assert _error_line(proc.stderr, retries=2) == (f"error: LLM endpoint {p.url} failed after 2 retries: HTTP 500 "
                                                   "Internal Server Error (injected fault)")
    assert p.posts == 3 and not out.exists()
    _no_leftovers(out)
    assert SECRET not in proc.stderr


@pytest.mark.slow
@pytest.mark.vllm
def test_endpoint_timing_out_leaves_the_previous_folder(generated, proxy, llm_server, tmp_path):  # noqa: F811
    _, previous, gen = generated
    assert gen.returncode == 0, gen.stderr
    import shutil

    out = tmp_path / "gold"
    shutil.copytree(previous, out)
    snapshot = {f.name: f.read_bytes() for f in out.iterdir()}
    p = proxy("slow", delay=4.0)  # stand-in: answers after the client gave up
    english = team_corpus(tmp_path, EN_DOCS)
    proc = run_cli("gold", "generate", "--dataset", str(english), "--out", str(out), "--force", "--llm-url", p.url,
                   "--llm-model", llm_server.model, "--n", "2", "--timeout", "1", "--max-retries", "1")
    assert proc.returncode == 2
    assert _error_line(proc.stderr) == f"error: LLM endpoint {p.url} failed after 1 retry: timed out after 1s"
    assert {f.name: f.read_bytes() for f in out.iterdir()} == snapshot  # the previous complete folder, untouched
    _no_leftovers(out)


@pytest.mark.slow
@pytest.mark.vllm
def test_endpoint_killed_mid_run_is_one_line_and_nothing_written(proxy, llm_server, tmp_path):  # noqa: F811
    p = proxy("die_after", die_after=1)  # stand-in: one answer goes through, then the endpoint is gone
    corpus, out = team_corpus(tmp_path, EN_DOCS), tmp_path / "gold"
    proc = run_cli("gold", "generate", "--dataset", str(corpus), "--out", str(out), "--llm-url", p.url,
                   "--llm-model", llm_server.model, "--n", "3", "--max-tokens", "16", "--concurrency", "1",
                   "--max-retries", "2")
    assert proc.returncode == 2
    assert re.fullmatch(rf"error: LLM endpoint {re.escape(p.url)} failed after 2 retries: "
                        r"(connection refused|server disconnected|connection reset)", _error_line(proc.stderr, 2))
    assert p.posts == 2 and not out.exists()
    _no_leftovers(out)


@pytest.mark.slow
@pytest.mark.vllm
def test_malformed_replies_are_retried_once_and_counted_not_fatal(proxy, llm_server, tmp_path):  # noqa: F811
    from evolve.gold._generate import GenerateOptions, generate_gold
    from evolve.llm import ChatClient

    p = proxy("garble", garble_every=2)  # stand-in: every second reply of the real model becomes prose
    ds = in_memory(EN_DOCS)
    with ChatClient(p.url, llm_server.model, concurrency=4) as client:
        result = generate_gold(ds, tmp_path / "gold", client, GenerateOptions(n=4, max_tokens=32, seed=2))
    stats = result.stats
    assert p.garbled >= 2 and stats.retried >= 2  # the garbled first replies were asked again
    assert stats.requests == 4 + stats.retried == p.posts
    assert sum(stats.parsed.values()) == 4 and sum(result.counts.values()) == 4
    assert result.counts["malformed"] == stats.failed
    if result.written:
        recs = [r for recs in read_gold(tmp_path / "gold").provenance.values() for r in recs]
        recs += [json.loads(x) for x in (tmp_path / "gold" / "rejected.jsonl").read_text().splitlines()]
        assert sorted(r["llm"]["attempts"] for r in recs) == sorted([1] * (4 - stats.retried) + [2] * stats.retried)


@pytest.mark.slow
@pytest.mark.vllm
def test_a_refused_prompt_is_one_bad_answer_but_refusing_all_is_an_error(proxy, llm_server):  # noqa: F811
    from evolve.errors import BackendError
    from evolve.llm import ChatClient

    p = proxy("error400", refuse_every=3)  # stand-in: every third prompt is "longer than the context"
    prompts = [[{"role": "user", "content": f'Reply with JSON: {{"n": {i}}}'}] for i in range(3)]
    with ChatClient(p.url, llm_server.model, concurrency=1) as client:
        answers = client.json_many(prompts, max_tokens=12)
        assert [a.how == "refused" for a in answers] == [False, False, True] and not answers[2].ok
        assert "maximum context length is 2048 tokens" in answers[2].text
        assert client.stats.parsed.get("refused") == 1 and client.stats.failed >= 1
        assert p.posts == 3 + client.stats.retried  # a refused prompt is not asked again
    q = proxy("error400", refuse_every=1)  # every request refused: the requests are wrong, and that is an error
    with ChatClient(q.url, llm_server.model) as client:
        expect_one_line(lambda: client.json_many(prompts[:2], max_tokens=12),
                        f"LLM endpoint {q.url} answered POST /chat/completions with HTTP 400 Bad Request: "
                        "This model's maximum context length", exc=BackendError)


@pytest.mark.vllm
def test_unserved_model_lists_what_is_served(llm_server, tmp_path):  # noqa: F811
    from evolve.errors import BackendError
    from evolve.llm import ChatClient

    with ChatClient(llm_server.url, "gpt-4o") as client:
        expect_one_line(client.info, f"--llm-model: 'gpt-4o' is not served by {llm_server.url}; it serves: "
                        f"{llm_server.model}", exc=BackendError)
    assert os.environ.get("EVOLVE_TEST_LLM_KEY") is None
