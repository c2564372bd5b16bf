"""``evolve search``: run the champion pipeline on the workspace's dataset for one query."""

from __future__ import annotations

from typing import Annotated

import typer

from evolve.cli._common import (
    CacheUrlOpt,
    ConfigOpt,
    GoldModeOpt,
    GoldOpt,
    SetOpt,
    StorageOpt,
    StudyOpt,
    TrackingOpt,
    WorkspaceOpt,
)

__all__ = ["register"]


def search_command(
    query: Annotated[str, typer.Argument(help="The query text.")],
    k: Annotated[int, typer.Option("--k", help="How many documents to show.")] = 10,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    dataset: Annotated[str | None, typer.Option("--dataset", help="Dataset to search (default: the study's).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    gold: GoldOpt = None,
    gold_mode: GoldModeOpt = None,
    workspace: WorkspaceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    cache_url: CacheUrlOpt = None,
):
    """Print the top documents (id, score, title, snippet) the champion pipeline finds for QUERY."""
    from rich.table import Table

    from evolve.cache import EmbeddingCache
    from evolve.cli._common import emit_json, load_workspace_study, out_console, pipeline_config, rich_progress
    from evolve.datasets import Dataset, load_dataset
    from evolve.errors import ConfigError
    from evolve.pipeline import Pipeline
    from evolve.workspace import Workspace

    if k < 1:
        raise ConfigError(f"--k: expected at least 1, got {k}")
    ws = Workspace(workspace, cache_url).ensure()
    cfg = pipeline_config(ws, config, set_)
    if dataset is not None:
        ds = load_dataset(dataset)
    else:
        _, ds = load_workspace_study(ws, study, storage, gold=gold, gold_mode=gold_mode)
    qid = "__query__"
    view = Dataset(ds.name, ds.source, ds.corpus, {**ds.queries, qid: query}, ds.qrels)
    cache = EmbeddingCache.open(ws)
    pipe = Pipeline(cfg, view, cache=cache, progress=rich_progress)
    try:
        ranked = pipe.retrieve([qid])[qid]
    finally:
        pipe.close()
        cache.close()
    hits = sorted(ranked.items(), key=lambda kv: -kv[1])[:k]
    rows = []
    for doc_id, score in hits:
        doc = ds.corpus[doc_id]
        snippet = " ".join(doc.text.split())[:160]
        rows.append({"id": doc_id, "score": score, "title": doc.title, "snippet": snippet})
    if json_out:
        emit_json({"query": query, "results": rows})
        return
    table = Table(title=f"top {k} for: {query}", title_justify="left")
    for col in ("#", "id", "score", "title", "snippet"):
        table.add_column(col, overflow="fold")
    for i, r in enumerate(rows, 1):
        table.add_row(str(i), r["id"], f"{r['score']:.4f}", r["title"][:60], r["snippet"])
    out_console.print(table)


def register(app: typer.Typer) -> None:
    app.command("search")(search_command)
