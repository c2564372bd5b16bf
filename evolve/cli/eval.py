"""``evolve eval``: evaluate one pipeline config on a dataset split."""

from __future__ import annotations

from typing import Annotated

import typer

from evolve.cli._common import (
    CacheUrlOpt,
    ConfigOpt,
    DatasetOpt,
    GoldModeOpt,
    GoldOpt,
    JsonOpt,
    SetOpt,
    StorageOpt,
    StrictOpt,
    StudyOpt,
    TrackingOpt,
    WorkspaceOpt,
)

__all__ = ["register", "eval_command"]


def eval_command(
    dataset: DatasetOpt = "scifact",
    split: Annotated[str | None, typer.Option("--split", help="Qrels split to score (gold: 'gold', 'gold.tune', ...).",
                                              show_default="test, else gold")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    json_out: JsonOpt = False,
    out: Annotated[str | None, typer.Option("--out", help="Write metrics.json, per_query.tsv, run.trec, config.yaml here.")] = None,
    strict: StrictOpt = False,
    subset: Annotated[int | None, typer.Option("--subset", help="Keep N documents: whole queries of the split (every judged document of each), then seeded fillers.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Embed everything; neither read nor write the cache.")] = False,
    gold: GoldOpt = None,
    gold_mode: GoldModeOpt = None,
    workspace: WorkspaceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    cache_url: CacheUrlOpt = None,
):
    """Evaluate one pipeline config end to end and print its metrics."""
    from evolve._io import atomic_write_json
    from evolve.cache import EmbeddingCache
    from evolve.cli._common import (
        emit_json,
        err_console,
        metrics_table,
        out_console,
        pipeline_config,
        rich_progress,
        warn_dataset,
    )
    from evolve.datasets import load_dataset
    from evolve.evaluate import DEFAULT_METRICS
    from evolve.gold import GoldSpec, apply_gold
    from evolve.pipeline import evaluate_config
    from evolve.splits import GOLD_SPLIT
    from evolve.workspace import Workspace

    ws = Workspace(workspace, cache_url).ensure()
    cfg = pipeline_config(ws, config, set_)
    if cfg.embedding.backend in ("sentence-transformers", "vllm"):
        from evolve.embedders import resolve_model_path

        resolve_model_path(cfg.embedding.model)  # a missing model fails before the dataset work
    spec = GoldSpec.parse(gold, gold_mode)
    ds = load_dataset(dataset, strict=strict)
    ds, _ = apply_gold(ds, spec, strict=strict)
    warn_dataset(ds)
    if split is None:
        split = "test" if "test" in ds.qrels or GOLD_SPLIT not in ds.qrels else GOLD_SPLIT
    ds.split_qrels(split)
    if subset:
        ds = ds.subset(subset, split)
        warn_dataset(ds)  # what the subset left out
    metrics = list(DEFAULT_METRICS)
    if any(ds.answers.get(q) for q in ds.split_qrels(split)):  # the gold carries reference answers
        metrics.append(f"context_recall@{cfg.answer.context_tokens}")
    cache = EmbeddingCache(None) if no_cache else EmbeddingCache.open(ws)
    try:
        result = evaluate_config(cfg, ds, split, cache=cache, progress=rich_progress, metrics=metrics)
    finally:
        cache.close()
    summary = result.summary()
    if not no_cache:
        atomic_write_json(ws.last_run_path, {"command": "eval", **result.cache.as_dict()})
    if out:
        result.write(out)
    if json_out:
        emit_json(summary)
        return
    out_console.print(metrics_table(f"{ds.name} / {split} ({summary['n_queries']} queries)", {"metrics": result.metrics}))
    err_console.print(
        f"embedded {summary['n_embedded']} text(s) in {summary['embed_seconds']:.1f}s, "
        f"cache hit rate {summary['cache_hit_rate']:.1%}, dataset {summary['dataset_fingerprint'][:12]}",
        highlight=False,
    )
    if "context_recall" in summary:
        ctx = summary["context_recall"]
        err_console.print(f"context_recall: {ctx['n_queries']} quer(y/ies) with a reference answer, tokens counted "
                          f"by local:{ctx['tokenizer']}, at most {ctx['max_passages']} passages", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
