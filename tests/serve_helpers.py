"""Shared by the serve tests: tiny corpora, a real `evolve serve` subprocess on 127.0.0.1, and a JSON client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from evolve.testing.serving import (  # noqa: F401  (shared with the benchmarks; the serve tests import them here)
    DENSE16,
    HYBRID,
    PANEL,
    InProcessServer,
    get,
    kendall_tau,
    panel_ndcg,
    post,
)

EVOLVE = str(Path(sys.executable).with_name("evolve"))

#: a tiny helpdesk corpus, Korean and English (folder dataset: docs/*.md, queries.jsonl, qrels.tsv)
MIXED_DOCS = {
    "vpn": ("VPN 접속 오류 해결 방법", "사내 VPN에 접속할 때 인증서 오류가 나면 인증서를 다시 발급받고 클라이언트를 재시작하세요. "
            "비밀번호를 다섯 번 틀리면 계정이 잠깁니다."),
    "leave": ("연차 휴가 신청 절차", "연차 휴가는 인사 시스템에서 신청하고 팀장의 승인을 받아야 합니다. 반차는 오전 또는 오후로 "
              "나누어 신청할 수 있습니다."),
    "wifi": ("회의실 와이파이 연결", "회의실 와이파이는 사번으로 로그인합니다. 연결이 끊기면 네트워크 설정에서 저장된 네트워크를 "
             "삭제하고 다시 연결하세요."),
    "printer": ("Printer shows offline", "If the office printer shows offline, restart the print spooler service and "
                "check that the printer is on the same network as your laptop."),
    "password": ("How to reset your password", "Open the account portal, choose forgot password, and follow the link "
                 "sent to your work email. The link expires after one hour."),
    "expenses": ("Submitting travel expenses", "Travel expenses are submitted in the finance portal within 30 days, "
                 "with a photo of every receipt attached."),
}

SPARSE_AUTO = """\
# BM25 only, the `auto` tokenizer (kiwipiepy for Korean text, English otherwise): no model to load
retrieval:
  mode: sparse
  top_k: 100
sparse:
  tokenizer: auto
"""


def write_mixed_corpus(folder: Path) -> Path:
    (folder / "docs").mkdir(parents=True, exist_ok=True)
    for doc_id, (title, text) in MIXED_DOCS.items():
        (folder / "docs" / f"{doc_id}.md").write_text(f"# {title}\n{text}\n", encoding="utf-8")
    queries = [{"_id": "q1", "text": "VPN 인증서 오류"}, {"_id": "q2", "text": "printer offline"}]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries),
                                          encoding="utf-8")
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tvpn\t1\nq2\tprinter\t1\n", encoding="utf-8")
    return folder


class Server:
    """`evolve serve` as a real subprocess in its own session; ``stop()`` sends SIGTERM to the group,
    ``kill()`` SIGKILL to the server alone (the crash test)."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None, timeout: float = 240):
        from evolve._servers import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._fh = open(log, "ab")
        self.proc = subprocess.Popen([EVOLVE, "serve", "--port", str(self.port), *args], stdout=self._fh,
                                     stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                     start_new_session=True)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"evolve serve exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"evolve serve did not answer within {timeout} s: {self.log_text()[-2000:]}")

    def log_text(self) -> str:
        if not self._fh.closed:
            self._fh.flush()
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        from evolve._servers import stop_server

        if self.proc.poll() is None:
            stop_server(self.proc, grace=15)
        self._fh.close()

    def kill(self) -> None:
        import signal

        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._fh.close()


#: SciFact train queries in the served subset (the scripted users search about 60 of them)
N_TRAIN = 100

def scifact_serve_folder(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """A BEIR folder with the 300 documents of the session's `scifact_small` (whose MiniLM vectors conftest's
    `seeded_cache` holds) plus every document judged for N_TRAIN seeded SciFact `train` queries, with `train` and
    `test` qrels; and a cache file with every MiniLM vector they need (documents and queries). Built once per
    session; every serve test module shares it. Returns (folder, cache file, train query ids)."""
    import random
    import shutil

    from conftest import seeded_cache

    from evolve.cache import EmbeddingCache
    from evolve.config import PipelineConfig
    from evolve.datasets import load_dataset
    from evolve.pipeline import evaluate_config

    base = tmp_path_factory.getbasetemp() / "scifact-serve"
    folder, cache_file, ready = base / "beir", base / "embeddings.sqlite", base / "ready.json"
    if ready.exists():
        return folder, cache_file, json.loads(ready.read_text())["train"]
    scifact = load_dataset("scifact")
    test_qids = sorted(scifact.qrels["test"])[:60]
    small = scifact.__class__(scifact.name, scifact.source, scifact.corpus, scifact.queries,
                              {"test": {q: scifact.qrels["test"][q] for q in test_qids}}).subset(300, "test")
    seeded = seeded_cache(tmp_path_factory, small)
    train = sorted(scifact.qrels["train"])
    random.Random(12).shuffle(train)
    train = sorted(train[:N_TRAIN])
    docs = set(small.corpus) | {d for q in train for d in scifact.qrels["train"][q]}
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for d in sorted(docs):
            doc = scifact.corpus[d]
            fh.write(json.dumps({"_id": d, "title": doc.title, "text": doc.text}, ensure_ascii=False) + "\n")
    qids = sorted(set(train) | set(small.qrels["test"]))
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as fh:
        for q in qids:
            fh.write(json.dumps({"_id": q, "text": scifact.queries[q]}, ensure_ascii=False) + "\n")
    for split, judged in (("train", {q: scifact.qrels["train"][q] for q in train}), ("test", small.qrels["test"])):
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{r}" for q in sorted(judged) for d, r in sorted(judged[q].items())]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    building = base / "building.sqlite"
    shutil.copy(seeded, building)
    cache = EmbeddingCache(building)
    try:
        ds = load_dataset(folder)
        for split in ("train", "test"):
            evaluate_config(PipelineConfig(), ds, split, cache=cache)
    finally:
        cache.close()
    os.replace(building, cache_file)
    ready.write_text(json.dumps({"train": train}))
    return folder, cache_file, train


def seed_workspace_cache(ws: Path, cache_file: Path) -> None:
    import shutil

    (ws / "cache").mkdir(parents=True, exist_ok=True)
    shutil.copy(cache_file, ws / "cache" / "embeddings.sqlite")
