"""Build a search table (issue 21): every distinct effective config of a search space's lattice evaluated once,
with the cost of each stage it needs measured once per distinct stage input.

Per config: the tune score (what strategies see), the judge score (a benchmark-only holdout) and the report score
(nDCG@10), the stages it needs and the seconds of its warm trial (tune queries, vectors cached). Per stage: the
seconds it took and the texts it embedded (dense vectors per (model, chunking, prefix): the chunks and every query
of the three sets; BM25 per (chunking, tokenizer): the chunks tokenised), so the costs can be re-weighted for a GPU.

Query sets, never the study's holdout and never the report split for tuning: the study's own roles
(:func:`evolve.splits.make_splits`, seed ``--split-seed``) give tune / holdout / report; this table splits the
study's **tune** queries by a hash of their text into ``tune`` (70%) and ``judge`` (30%), leaves the study's
holdout alone, and scores the report split (SciFact's test) only as ``report``. A set with one judged split
(KorQuAD) has no report role: there the study's tune queries are hashed three ways (tune 50%, judge 30%, report
20%), and the study's holdout is still left alone.

    python benchmarks/search_table.py --space benchmarks/search_table_space_small.yaml --subset 800 \\
        --out benchmarks/results/search_table_small            # the small proof table committed here
    python benchmarks/search_table.py --space benchmarks/search_table_space.yaml \\
        --out benchmarks/results/search_table_scifact          # the issue's table (>= 500 configs; hours)

Rerank stages (``rerank|bi-encoder:model:max_length``, :func:`evolve.study._strategy.stage_keys`) are the rerank
model's vectors of every document and every query of the three sets, measured once (:func:`_rerank_stage`); a warm
trial that still embeds anything stops the build, so no stage cost leaks into a warm trial's seconds.

``benchmarks/search_replay.py`` replays strategies on a table.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolve.cache import EmbeddingCache
from evolve.config import apply_overrides
from evolve.datasets import load_dataset
from evolve.embedders import EmbedderPool
from evolve.evaluate import evaluate_run
from evolve.pipeline import Pipeline, chunk_set
from evolve.provenance import provenance
from evolve.search_space import load_search_space
from evolve.splits import make_splits
from evolve.study._strategy import space_configs, space_lattice
from evolve.study.replay import Row, Table
from evolve.workspace import Workspace

METRIC = "ndcg@10"


def query_sets(ds, split_seed: int, judge_fraction: float = 0.3, report_fraction: float = 0.2) -> dict[str, list[str]]:
    """tune / judge from the study's tune role (by a hash of the text), report from the report role; a set with no
    report role (one judged split) takes its report set from the study's tune role too (``report_fraction``). The
    study's holdout is never scored."""
    splits = make_splits(ds, split_seed)
    own_report = not splits.report
    tune, judge, report = [], [], []
    for q in splits.tune:
        h = int(hashlib.sha256(f"search-table:{ds.queries[q]}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        if h < judge_fraction:
            judge.append(q)
        elif own_report and h < judge_fraction + report_fraction:
            report.append(q)
        else:
            tune.append(q)
    return {
        "tune": sorted(tune),
        "judge": sorted(judge),
        "report": sorted(report if own_report else splits.report),
        "study_holdout_left_out": sorted(splits.holdout),
    }


def _qrels(ds, qids):
    merged = {}
    for split in ds.qrels.values():
        merged.update(split)
    return {q: merged[q] for q in qids if q in merged}


def measure_stages(candidates, space, ds, cache, pool, all_qids) -> tuple[dict[str, float], dict[str, int]]:
    """Seconds and texts of each distinct stage, measured once, in order of first need."""
    from evolve.sparse._bm25 import term_stats

    seconds, texts = {}, {}
    for c in candidates:
        config = space.config_for(c.params)
        for stage in c.stages:
            if stage in seconds:
                continue
            kind = stage.split("|")[0]
            t0 = time.perf_counter()
            if kind == "dense":
                dense = apply_overrides(config, ["retrieval.mode=dense", "index.type=flat", "rerank.transport=none"])
                pipe = Pipeline(dense, ds, cache=cache, embedders=pool).prepare()
                pipe.embed_queries(all_qids)
                texts[stage] = pipe.stats.n_embedded
            elif kind == "bm25":
                cs = chunk_set(ds, config.chunking, config.embedding.model)
                term_stats(cs.texts, config.sparse.tokenizer, digest=cs.digest, cache=cache)
                texts[stage] = len(cs.texts)
            else:
                texts[stage] = _rerank_stage(config.rerank, ds, cache, pool, all_qids)
            seconds[stage] = time.perf_counter() - t0
            print(f"stage {stage}: {seconds[stage]:.1f}s, {texts[stage]} texts", file=sys.stderr, flush=True)
    return seconds, texts


def _rerank_stage(rerank, ds, cache, pool, all_qids) -> int:
    """A bi-encoder rerank's vectors: every document's full text and every query of the three sets, with the rerank
    prefixes, through the same cache the trials read (an upper bound on what a night's lazy rerank embeds: a
    document is embedded the first time a head holds it). Other transports score pairs in every trial and have no
    stage to measure: :func:`main` refuses them before any stage runs."""
    from evolve.cache import CacheStats
    from evolve.rerankers import get_reranker_class

    stats = CacheStats()
    reranker = get_reranker_class("bi-encoder")(rerank, cache=cache, embedders=pool, stats=stats)
    docs = [rerank.doc_prefix + d.full_text for d in ds.corpus.values()]
    queries = [rerank.query_prefix + ds.queries[q] for q in all_qids]
    # one call: every document in the first query's head, none in the others'; both vector kinds are cached
    reranker.score_batch(queries, [docs] + [[] for _ in queries[1:]])
    return stats.n_embedded  # what this stage embedded (texts an earlier stage cached with the same model are free)


def score(pipe: Pipeline, qrels: dict) -> float:
    qids = sorted(qrels)
    pipe.embed_queries(qids)
    means, _ = evaluate_run(qrels, pipe.retrieve(qids), [METRIC])
    return means[METRIC]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--subset", type=int, default=None)
    ap.add_argument("--space", default=str(Path(__file__).with_name("search_table_space.yaml")))
    ap.add_argument("--lattice-points", type=int, default=3, help="points of a range without a step")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--workspace", default=".evolve-search-table", help="where the vectors are cached")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    prov = provenance()  # the code that runs is the code at the start: later commits during hours of build are not it
    ds = load_dataset(args.dataset)
    if args.subset:
        ds = ds.subset(args.subset)
    sets = query_sets(ds, args.split_seed)
    qrels = {name: _qrels(ds, sets[name]) for name in ("tune", "judge", "report")}
    space = load_search_space(args.space)
    lattice = space_lattice(space, args.lattice_points)
    candidates = space_configs(space, lattice)
    print(
        f"{len(candidates)} distinct configs; queries tune {len(qrels['tune'])}, judge {len(qrels['judge'])}, "
        f"report {len(qrels['report'])}",
        file=sys.stderr,
        flush=True,
    )
    other = sorted({s for c in candidates for s in c.stages if s.startswith("rerank|") and not
                    s.startswith("rerank|bi-encoder:")})
    if other:  # refused before hours of stages, not when the first one comes up
        raise SystemExit(f"error: stage '{other[0]}': expected bi-encoder reranks only (the one transport whose cost "
                         "is a stage); cross-encoder, vllm and openai-rerank score pairs inside every trial")
    ws = Workspace(args.workspace).ensure()
    cache = EmbeddingCache.open(ws)
    held = cache.store.stats().entries if cache.store is not None else 0
    if held:  # a stage's seconds and texts are what it newly embedded: vectors already cached would read as free
        cache.close()
        raise SystemExit(f"error: --workspace {args.workspace}: expected an empty embedding cache, got {held} vectors "
                         "(a stage would read as nearly free; use a new folder)")
    pool = EmbedderPool()
    all_qids = sorted(set().union(*(set(q) for q in qrels.values())))
    try:
        stage_seconds, stage_texts = measure_stages(candidates, space, ds, cache, pool, all_qids)
        rows = {}
        for i, c in enumerate(candidates):
            config = space.config_for(c.params)
            t0 = time.perf_counter()
            pipe = Pipeline(config, ds, cache=cache, embedders=pool).prepare()
            tune = score(pipe, qrels["tune"])
            warm = time.perf_counter() - t0
            if pipe.stats.n_embedded:
                raise SystemExit(
                    f"error: config {c.key}: expected a warm trial (every stage measured), got "
                    f"{pipe.stats.n_embedded} texts embedded in it"
                )
            rows[c.key] = Row(
                c.key, c.params, c.stages, warm, tune, score(pipe, qrels["judge"]), score(pipe, qrels["report"])
            )
            print(
                f"[{i + 1}/{len(candidates)}] tune {tune:.4f} warm {warm:.2f}s {c.params}", file=sys.stderr, flush=True
            )
    finally:
        pool.close()
        cache.close()
    meta = {
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "dataset": args.dataset,
        "subset": args.subset,
        "dataset_fingerprint": ds.fingerprint,
        "corpus_fingerprint": ds.corpus_fingerprint(),
        "n_documents": len(ds.corpus),
        "query_sets": {k: len(v) for k, v in sets.items()},
        "gold_fingerprints": {
            k: hashlib.sha256(repr(sorted(v.items())).encode()).hexdigest()[:16] for k, v in qrels.items()
        },
        "split_seed": args.split_seed,
        "metric": METRIC,
        "space": args.space,
        "space_hash": space.hash(),
        "lattice_points": args.lattice_points,
        "lattice": lattice,
        "n_configs": len(rows),
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "git_commit": prov["git_commit"],
        "packages": prov["packages"],
        "python": prov["python"],
        "platform": prov["platform"],
        "cpus": os.cpu_count(),
    }
    Table(rows, stage_seconds, stage_texts, meta).write(Path(args.out))
    print(f"wrote {len(rows)} configs, {len(stage_seconds)} stages to {args.out} in {meta['wall_seconds']}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
