"""Does LLM-made gold rank pipelines the way people's judgements do? Kendall's tau on SciFact.

1. ``evolve gold generate`` on a SciFact sample: passages of documents that have TEST judgements, so the human
   test qrels cover the same ground.
2. ``evolve gold judge`` of that folder (pools of BM25, dense, hybrid; ``--depth``).
3. A fixed panel of configs (BM25 variants with other k1/b/tokenizers, dense MiniLM whole-document, chunked and
   Matryoshka-truncated to 256/128, hybrids rrf/wsum, and a hybrid reranked by the all-mpnet-base-v2 bi-encoder)
   is scored (nDCG@10) three times: under the generated gold (one positive per query), under the judged gold,
   and under SciFact's human test qrels (300 queries).
4. Kendall's tau (``scipy.stats.kendalltau``, tau-b) between the panel's orderings, for all configs and for the
   top 5 by human qrels alone (where promotion decides).

Published bars: synthetic against human queries tau 0.815 (Rahmani et al., SIGIR 2024, "Synthetic test
collections for retrieval evaluation"); LLM (UMBRELA) against NIST judgments tau ~0.89 (TREC 2024 RAG track),
weaker among the top systems.

    .venv/bin/python benchmarks/gold_agreement.py --llm-url http://127.0.0.1:8000/v1 --llm-model NAME \\
        [--n 100] [--depth 10] [--subset 1000] [--workspace .evolve-bench]

``--subset N`` runs the panel on N documents (every test-judged one, then seeded fillers) instead of all 5,183:
the same corpus under all three golds, so the comparison stays fair; vectors go through the workspace's cache.
Results: a table and the taus on stdout, ``benchmarks/out/gold_agreement.json`` and the two gold folders under
``benchmarks/out/gold_agreement/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evolve.cache import EmbeddingCache
from evolve.config import parse_config
from evolve.datasets import Dataset, load_dataset
from evolve.embedders import EmbedderPool
from evolve.gold import read_gold
from evolve.gold._generate import GenerateOptions, generate_gold
from evolve.gold._judge import JudgeOptions, default_pool_configs, judge_gold
from evolve.llm import ChatClient
from evolve.pipeline import Pipeline

SPARSE = {"retrieval": {"mode": "sparse"}}
DENSE = {"retrieval": {"mode": "dense"}}
HYBRID = {"retrieval": {"mode": "hybrid"}, "sparse": {"tokenizer": "english", "k1": 0.9, "b": 0.4}}

#: the panel: name -> config (fixed: the same on every run, so figures compare)
PANEL: dict[str, dict] = {
    "bm25 english k1=0.9 b=0.4": {**SPARSE, "sparse": {"tokenizer": "english", "k1": 0.9, "b": 0.4}},
    "bm25 english k1=1.5 b=0.75": {**SPARSE, "sparse": {"tokenizer": "english", "k1": 1.5, "b": 0.75}},
    "bm25 english k1=0.6 b=0.2": {**SPARSE, "sparse": {"tokenizer": "english", "k1": 0.6, "b": 0.2}},
    "bm25 regex k1=0.9 b=0.4": {**SPARSE, "sparse": {"tokenizer": "regex", "k1": 0.9, "b": 0.4}},
    "bm25 regex k1=1.5 b=0.75": {**SPARSE, "sparse": {"tokenizer": "regex", "k1": 1.5, "b": 0.75}},
    "dense minilm whole": {**DENSE},
    "dense minilm sentences 128": {**DENSE, "chunking": {"strategy": "sentences", "size": 128}},
    "dense minilm tokens 64/16": {**DENSE, "chunking": {"strategy": "tokens", "size": 64, "overlap": 16}},
    "dense minilm dim 256": {**DENSE, "embedding": {"dim": 256}},
    "dense minilm dim 128": {**DENSE, "embedding": {"dim": 128}},
    "hybrid rrf k=60": {**HYBRID, "fusion": {"method": "rrf", "rrf_k": 60}},
    "hybrid wsum 0.4": {**HYBRID, "fusion": {"method": "wsum", "norm": "min-max", "weight": 0.4}},
    "hybrid wsum 0.7": {**HYBRID, "fusion": {"method": "wsum", "norm": "min-max", "weight": 0.7}},
    "hybrid wsum 0.4 + mpnet rerank 20": {
        **HYBRID, "fusion": {"method": "wsum", "norm": "min-max", "weight": 0.4},
        "rerank": {"transport": "bi-encoder", "model": "all-mpnet-base-v2", "depth": 20, "combine": "fuse",
                   "weight": 0.5, "max_length": 384, "batch_size": 32}},
}

BARS = {"synthetic queries vs human (Rahmani et al., SIGIR 2024)": 0.815,
        "LLM judgments vs NIST (TREC 2024 RAG, UMBRELA)": 0.89}


def tau(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llm-url", required=True)
    ap.add_argument("--llm-model", required=True)
    ap.add_argument("--llm-api-key-env", default=None)
    ap.add_argument("--n", type=int, default=100, help="passages to write questions for")
    ap.add_argument("--depth", type=int, default=10, help="judge pool depth per config")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--max-passage-chars", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--subset", type=int, default=None, help="documents the panel runs on (default: all)")
    ap.add_argument("--no-rerank", action="store_true", help="leave out the mpnet rerank config")
    ap.add_argument("--workspace", default=str(REPO / ".evolve-bench"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out"))
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    full = load_dataset("scifact")
    ds = full.subset(args.subset, "test") if args.subset else full
    test = {q: d for q, d in ds.split_qrels("test").items() if d}
    judged_docs = {d for docs in test.values() for d in docs}
    out = Path(args.out)
    gen_dir, judged_dir = out / "gold_agreement" / "generated", out / "gold_agreement" / "judged"
    cache = EmbeddingCache(Path(args.workspace) / "cache" / "embeddings.sqlite")
    pool = EmbedderPool()
    client = ChatClient(args.llm_url, args.llm_model, api_key_env=args.llm_api_key_env,
                        concurrency=args.concurrency, timeout=600)
    print(f"SciFact: {len(ds.corpus)} documents, {len(test)} test queries; generating from {len(judged_docs)} "
          f"test-judged documents with {args.llm_model} at {client.display_url}", flush=True)

    t0 = time.perf_counter()
    gen = generate_gold(ds, gen_dir, client, GenerateOptions(n=args.n, seed=args.seed, max_tokens=args.max_tokens),
                        doc_ids=judged_docs)
    t_gen = time.perf_counter() - t0
    print(f"generated {gen.generated}, kept {gen.kept} ({gen.counts}) in {t_gen:.0f} s", flush=True)
    if not gen.written:
        print("no generated question survived the filters: nothing to compare", flush=True)
        return 1
    gen_stats = client.stats.as_dict()
    t0 = time.perf_counter()
    client.stats = type(client.stats)()
    jr = judge_gold(ds, gen_dir, client, default_pool_configs(), JudgeOptions(depth=args.depth,
                    max_passage_chars=args.max_passage_chars), out=judged_dir, cache=cache, embedders=pool)
    t_judge = time.perf_counter() - t0
    print(f"judged {jr.judged} of {jr.asked} pooled pairs ({jr.grades}, {jr.failed} unreadable) in {t_judge:.0f} s",
          flush=True)

    generated, judged = read_gold(gen_dir), read_gold(judged_dir)
    view = Dataset(ds.name, ds.source, ds.corpus, {**ds.queries, **generated.queries}, {"test": test}, [])
    panel = {k: v for k, v in PANEL.items() if not (args.no_rerank and "rerank" in v)}
    rows = []
    for name, data in panel.items():
        t0 = time.perf_counter()
        pipe = Pipeline(parse_config(data), view, cache=cache, embedders=pool)
        row = {"name": name,
               "human": pipe.evaluate(test).metrics["ndcg@10"],
               "generated": pipe.evaluate(generated.qrels).metrics["ndcg@10"],
               "judged": pipe.evaluate(judged.all_qrels()).metrics["ndcg@10"],
               "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(f"  {name:<36} human {row['human']:.4f}  generated {row['generated']:.4f}  judged {row['judged']:.4f}"
              f"  ({row['seconds']} s)", flush=True)
    pool.close()
    cache.close()

    def taus(sel: list[dict]) -> dict[str, float]:
        h, g, j = ([r[k] for r in sel] for k in ("human", "generated", "judged"))
        return {"generated_vs_human": tau(g, h), "judged_vs_human": tau(j, h), "generated_vs_judged": tau(g, j)}

    top5 = sorted(rows, key=lambda r: -r["human"])[:5]
    result = {
        "llm_model": args.llm_model, "n": args.n, "depth": args.depth, "seed": args.seed,
        "corpus_docs": len(ds.corpus), "test_queries": len(test), "generated": gen.generated, "kept": gen.kept,
        "filter_counts": gen.counts, "judged_pairs": jr.judged, "judge_grades": jr.grades,
        "llm_generate": gen_stats, "llm_judge": client.stats.as_dict(),
        "panel": rows, "tau_all": taus(rows), "tau_top5_by_human": taus(top5), "bars": BARS,
        "seconds": {"generate": round(t_gen, 1), "judge": round(t_judge, 1),
                    "total": round(time.perf_counter() - t_start, 1)},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "gold_agreement.json").write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(f"Kendall's tau over {len(rows)} configs ({gen.kept} generated queries, {len(test)} human test queries):")
    for scope, t in (("all configs", result["tau_all"]), ("top 5 by human qrels", result["tau_top5_by_human"])):
        print(f"  {scope:<22} generated vs human {t['generated_vs_human']:+.3f}   judged vs human "
              f"{t['judged_vs_human']:+.3f}   generated vs judged {t['generated_vs_judged']:+.3f}")
    print("Published bars: " + "; ".join(f"{k} tau {v}" for k, v in BARS.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
