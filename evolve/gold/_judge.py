"""``evolve gold judge``: pool the top results of several different pipelines for every gold query and let an
LLM grade each pooled (query, document) pair 0-3, as TREC builds test collections.

One positive per query (the passage a question was written from) favours whatever retriever resembles the
generator; grading a pool of BM25, dense, hybrid and the champion's results finds the other relevant documents.

* The pool: the top ``depth`` documents of each config (:func:`default_pool_configs`: BM25, dense MiniLM,
  their RRF hybrid, and the workspace champion when there is one; or the configs given), run with
  :class:`evolve.pipeline.Pipeline` through the workspace's embedding cache, plus every document the folder
  already judges for the query.
* The grade: ``prompts/judge.en.yaml``, UMBRELA-style (the TREC 2024 RAG assessor), one token ("0".."3") forced
  on vLLM with structured output; other servers are read for their first digit. A reply without one is counted
  and leaves the pair unjudged.
* The folder: the graded pairs join its qrels (a pinned query's in its ``qrels/<role>.tsv``); the generated
  positive keeps at least its grade, and a query a person reviewed keeps the grades it has. Queries get
  ``judged: true``; every judgement gets a provenance record (``source: judged``, the grade, the configs and
  ranks that pooled it, model, prompt hash, tokens, seconds); ``judge.md`` / ``judge.json`` report the run. Pairs
  judged before are not asked again unless ``rejudge``. Everything else in the folder is kept; it is rewritten
  all or nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolve.config import PipelineConfig
from evolve.datasets import Dataset
from evolve.errors import DatasetError
from evolve.llm import ChatClient, LLMStats
from evolve.progress import ProgressFactory, null_progress

__all__ = ["JudgeOptions", "JudgeResult", "default_pool_configs", "judge_gold", "pool_results"]


@dataclass(frozen=True)
class JudgeOptions:
    depth: int = 20
    max_passage_chars: int = 2000
    rejudge: bool = False

    def __post_init__(self):
        if not 1 <= self.depth <= 100:
            raise ValueError(f"depth must be in 1..100, got {self.depth}")


@dataclass
class JudgeResult:
    out: Path
    queries: int
    pooled: int
    asked: int
    judged: int
    failed: int
    grades: dict[str, int]
    stats: LLMStats
    configs: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"out": str(self.out), "queries": self.queries, "pooled_pairs": self.pooled, "asked": self.asked,
                "judged": self.judged, "unreadable": self.failed, "grades": self.grades, "configs": self.configs,
                "llm": self.stats.as_dict()}


def default_pool_configs(champion: str | Path | None = None) -> dict[str, PipelineConfig]:
    """BM25 (``auto`` tokenizer: kiwipiepy for Korean), dense MiniLM, their RRF hybrid, and the champion."""
    from evolve.config import load_config

    base = PipelineConfig().model_dump()
    sparse = {"tokenizer": "auto", "k1": 0.9, "b": 0.4}
    configs = {
        "bm25": PipelineConfig.model_validate({**base, "retrieval": {**base["retrieval"], "mode": "sparse"},
                                               "sparse": sparse}),
        "dense": PipelineConfig(),
        "hybrid": PipelineConfig.model_validate({**base, "retrieval": {**base["retrieval"], "mode": "hybrid"},
                                                 "sparse": sparse, "fusion": {"method": "rrf", "rrf_k": 60}}),
    }
    if champion is not None and Path(champion).is_file():
        configs["champion"] = load_config(champion)
    return configs


def _dedupe(configs: dict[str, PipelineConfig]) -> dict[str, PipelineConfig]:
    seen, out = set(), {}
    for name, cfg in configs.items():
        fp = cfg.fingerprint()
        if fp not in seen:
            seen.add(fp)
            out[name] = cfg
    return out


def pool_results(
    dataset: Dataset,
    queries: dict[str, str],
    configs: dict[str, PipelineConfig],
    depth: int,
    *,
    cache=None,
    embedders=None,
    progress: ProgressFactory = null_progress,
) -> dict[str, dict[str, dict[str, int]]]:
    """query id -> doc id -> {config name: rank (1-based)} over the top ``depth`` of every config."""
    from evolve.cache import EmbeddingCache
    from evolve.embedders import EmbedderPool
    from evolve.pipeline import Pipeline

    view = Dataset(dataset.name, dataset.source, dataset.corpus, dict(queries), {"gold": {}}, [])
    own_pool = embedders is None
    embedders = embedders or EmbedderPool()
    cache = cache if cache is not None else EmbeddingCache(None)
    qids = sorted(queries)
    pool: dict[str, dict[str, dict[str, int]]] = {q: {} for q in qids}
    try:
        for name, cfg in configs.items():
            pipe = Pipeline(cfg, view, cache=cache, embedders=embedders, progress=progress)
            run = pipe.retrieve(qids)
            for q in qids:
                ranked = sorted(run.get(q, {}).items(), key=lambda kv: (-kv[1], kv[0]))[:depth]
                for rank, (doc_id, _score) in enumerate(ranked, 1):
                    pool[q].setdefault(doc_id, {})[name] = rank
    finally:
        if own_pool:
            embedders.close()
    return pool


def _passage(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit] + " …"


def _extra_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".")
            and p.name not in ("queries.jsonl", "qrels.tsv", "qrels.txt", "gold.jsonl", "judge.md", "judge.json")}


def judge_gold(
    dataset: Dataset,
    gold_dir: str | Path,
    client: ChatClient,
    configs: dict[str, PipelineConfig],
    options: JudgeOptions = JudgeOptions(),
    *,
    out: str | Path | None = None,
    cache=None,
    embedders=None,
    progress: ProgressFactory = null_progress,
) -> JudgeResult:
    """Pool, grade and write (see the module doc) into ``out`` (default: the gold folder itself, rewritten all
    or nothing). An endpoint that stays down raises :class:`~evolve.errors.BackendError` and writes nothing."""
    from evolve.gold._folder import read_gold, write_gold
    from evolve.gold.prompts import load_prompt

    gold_dir = Path(gold_dir).expanduser().absolute()
    gold = read_gold(gold_dir)
    out = Path(out).expanduser().absolute() if out is not None else gold_dir
    configs = _dedupe(configs)
    if not configs:
        raise ValueError("judge_gold needs at least one config to pool")
    judged_qrels = gold.all_qrels()
    queries = {q: t for q, t in gold.queries.items()
               if any(d in dataset.corpus for d in judged_qrels.get(q, {})) or q not in judged_qrels}
    if not queries:
        raise DatasetError("expected gold queries whose documents are in the dataset, got none: is this the "
                           f"dataset the gold was made from? ({dataset.source})", path=str(gold_dir))
    pool = pool_results(dataset, queries, configs, options.depth, cache=cache, embedders=embedders,
                        progress=progress)
    done = {(r["query_id"], r.get("doc_id")) for recs in gold.provenance.values() for r in recs
            if r.get("source") == "judged"}
    pairs: list[tuple[str, str, dict[str, int]]] = []
    n_pooled = 0
    for q in sorted(pool):
        docs = dict(pool[q])
        for d in judged_qrels.get(q, {}):
            if d in dataset.corpus:
                docs.setdefault(d, {})
        n_pooled += len(docs)
        for d in sorted(docs):
            if options.rejudge or (q, d) not in done:
                pairs.append((q, d, docs[d]))
    prompt = load_prompt("judge", "en")
    messages = [prompt.render(query=gold.queries[q],
                              passage=_passage(dataset.corpus[d].full_text, options.max_passage_chars))
                for q, d, _ in pairs]
    identity = client.identity()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with progress("judging pooled results", len(messages)) as advance:
        answers = client.choice_many(messages, prompt.grades, progress=advance) if messages else []

    qrels = {q: dict(d) for q, d in gold.qrels.items()}
    pinned = {r: {q: dict(d) for q, d in p.items()} for r, p in gold.pinned.items()}
    metadata = {q: dict(m) for q, m in gold.metadata.items()}
    provenance = [r for recs in gold.provenance.values() for r in recs]
    grades: dict[str, int] = {g: 0 for g in prompt.grades}
    failed = 0
    for (q, d, by), a in zip(pairs, answers):
        record = {"query_id": q, "doc_id": d, "source": "judged", "pooled_by": by, "model": identity,
                  "prompt": prompt.provenance(), "llm": a.record(), "created_at": started}
        if not a.ok:
            failed += 1
            provenance.append({**record, "grade": None})
            continue
        grade = int(a.data["choice"])
        grades[str(grade)] += 1
        meta = metadata.setdefault(q, {})
        target = next((p for p in pinned.values() if q in p), qrels)
        current = target.setdefault(q, {})
        if meta.get("reviewed") and d in current:
            final = current[d]  # a person's grade stands
        elif d == meta.get("doc_id") and d in current:
            final = max(current[d], grade)  # the generated positive stays at least what it was
        else:
            final = grade
        current[d] = final
        meta["judged"] = True
        provenance.append({**record, "grade": grade, "final_grade": final})
    for q in queries:
        if any((q, d) in done for d in pool.get(q, {})):
            metadata.setdefault(q, {})["judged"] = True
    report = {
        "command": "gold judge", "created_at": started, "dataset": dataset.name,
        "dataset_fingerprint": dataset.fingerprint, "gold": str(gold_dir), "gold_fingerprint": gold.fingerprint(),
        "model": identity, "prompt": prompt.provenance(), "depth": options.depth,
        "max_passage_chars": options.max_passage_chars, "configs": {n: c.fingerprint() for n, c in configs.items()},
        "queries": len(queries), "pooled_pairs": n_pooled, "asked": len(pairs), "judged": len(pairs) - failed,
        "unreadable": failed, "grades": grades, "llm": client.stats.as_dict(),
        "forced_choice": bool(answers) and client.is_vllm,
    }
    from evolve.provenance import provenance as run_provenance

    report["provenance"] = run_provenance()
    extra: dict[str, str | bytes] = _extra_files(gold_dir)
    extra["judge.md"] = render_judge_report(report)
    extra["judge.json"] = json.dumps(report, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    write_gold(out, gold.queries, qrels, metadata=metadata, pinned=pinned or None, provenance=provenance,
               extra_files=extra)
    return JudgeResult(out, len(queries), n_pooled, len(pairs), len(pairs) - failed, failed, grades, client.stats,
                       list(configs))


def render_judge_report(report: dict) -> str:
    llm = report["llm"]
    lines = [
        "# Judged gold: report",
        "",
        f"- dataset: {report['dataset']} ({report['dataset_fingerprint'][:12]})",
        f"- model: {report['model']['model']} at {report['model']['url']}",
        f"- prompt: {report['prompt']['version']} (sha256 {report['prompt']['sha256'][:12]}), UMBRELA-style 0-3",
        f"- pool: top {report['depth']} of {', '.join(report['configs'])}; grade "
        + ("forced to one token (structured output)" if report["forced_choice"] else "read from the reply"),
        "",
        f"{report['queries']} queries, {report['pooled_pairs']} pooled pairs, {report['asked']} asked, "
        f"{report['judged']} judged, {report['unreadable']} unreadable.",
        "",
        "| grade | pairs |",
        "|---:|---:|",
        *[f"| {g} | {n} |" for g, n in report["grades"].items()],
        "",
        f"LLM: {llm['requests']} requests, {llm['prompt_tokens']} prompt tokens, {llm['completion_tokens']} "
        f"completion tokens, {llm['seconds']} s; replies read: {llm['parsed']}",
        "",
    ]
    return "\n".join(lines)
