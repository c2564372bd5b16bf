"""``evolve cache``: stats, prune, invalidate."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from evolve.cli._common import CacheUrlOpt, StorageOpt, StudyOpt, TrackingOpt, WorkspaceOpt

__all__ = ["register", "cache_app"]

cache_app = typer.Typer(help="Inspect and maintain the embedding cache.", no_args_is_help=True)


def _open(workspace, cache_url=None):
    from evolve.cache import EmbeddingCache
    from evolve.errors import StorageError
    from evolve.workspace import Workspace

    ws = Workspace(workspace, cache_url).ensure()
    cache = EmbeddingCache.open(ws)
    if cache.store is None:
        raise StorageError(f"embedding cache {ws.cache_path} could not be opened: expected a readable SQLite file")
    return ws, cache


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@cache_app.command("stats")
def stats(
    workspace: WorkspaceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    cache_url: CacheUrlOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
):
    """Entries, size on disk and the hit rate of the last run."""
    from evolve.cache._derived import derived_bytes
    from evolve.cli._common import emit_json, out_console

    ws, cache = _open(workspace, cache_url)
    try:
        st = cache.store.stats()
        derived = derived_bytes(cache.folder)
    finally:
        cache.close()
    last = json.loads(ws.last_run_path.read_text()) if ws.last_run_path.exists() else None
    data = {"entries": st.entries, "size_bytes": st.size_bytes, "location": st.location,
            "stale_entries": st.stale_entries, "derived_bytes": derived, "last_run": last}
    if json_out:
        emit_json(data)
        return
    out_console.print(f"entries        {st.entries}", highlight=False)
    out_console.print(f"size           {_human(st.size_bytes)}", highlight=False)
    out_console.print(f"location       {st.location}", highlight=False)
    out_console.print(f"derived files  {_human(derived)} (faiss indexes, BM25 statistics)", highlight=False)
    if st.stale_entries:
        out_console.print(f"stale          {st.stale_entries} entries of an older key scheme, unreachable: "
                          "`evolve cache prune` removes them", highlight=False)
    if last:
        out_console.print(
            f"last run       hit rate {last['cache_hit_rate']:.1%} ({last['n_hits']}/{last['n_texts']} texts, "
            f"{last['n_embedded']} embedded in {last['embed_seconds']:.1f}s)",
            highlight=False,
        )
    else:
        out_console.print("last run       none recorded", highlight=False)


@cache_app.command("prune")
def prune(
    max_size: Annotated[str | None, typer.Option(
        "--max-size", help="Keep at most this much, e.g. 500MB: derived files, then the least recently used vectors "
                           "go first. Without it only what no key reaches goes.")] = None,
    workspace: WorkspaceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    cache_url: CacheUrlOpt = None,
):
    """Remove what no key reaches (entries of older key schemes, derived files of older layouts), then fit the
    cache into ``--max-size``: derived files (persisted indexes, BM25 statistics) first, then the least recently
    used vectors."""
    from evolve.cli._common import out_console, parse_size

    limit = parse_size(max_size) if max_size is not None else None
    _, cache = _open(workspace, cache_url)
    try:
        res = cache.prune(limit)
        st = cache.store.stats()
    finally:
        cache.close()
    n = res.entries
    line = f"removed {n} entr{'y' if n == 1 else 'ies'}; {st.entries} left, {_human(st.size_bytes)}"
    if res.files:
        line += f"; removed {res.files} derived file{'' if res.files == 1 else 's'} ({_human(res.file_bytes)})"
    out_console.print(line, highlight=False)


@cache_app.command("invalidate")
def invalidate(
    model: Annotated[str, typer.Option("--model", help="Model name as configured (embedding.model).")],
    workspace: WorkspaceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    cache_url: CacheUrlOpt = None,
):
    """Drop every vector of a model (e.g. one that changed behind an HTTP endpoint) and the indexes built on them."""
    from evolve.cli._common import out_console

    _, cache = _open(workspace, cache_url)
    try:
        removed = cache.invalidate(model)
    finally:
        cache.close()
    out_console.print(f"removed {removed} entr{'y' if removed == 1 else 'ies'} of model '{model}'", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
