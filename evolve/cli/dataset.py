"""``evolve dataset info``: what a ``--dataset`` holds (documents by source, judged queries, fingerprints)."""

from __future__ import annotations

import typer

from evolve.cli._common import DatasetOpt, JsonOpt, StrictOpt

__all__ = ["dataset_app", "register", "dataset_summary"]

dataset_app = typer.Typer(
    name="dataset",
    help="Inspect a dataset: a bundled name, a folder, a Notion export or a dataset manifest (.yaml).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def dataset_summary(ds) -> dict:
    by_source: dict[str, int] = {}
    for doc in ds.corpus.values():
        label = str(doc.metadata.get("source") or "-")
        by_source[label] = by_source.get(label, 0) + 1
    return {
        "name": ds.name,
        "source": ds.source,
        "documents": len(ds.corpus),
        "by_source": dict(sorted(by_source.items())),
        "queries": len(ds.queries),
        "splits": {s: {"queries": len(q), "judgements": sum(len(d) for d in q.values())} for s, q in sorted(ds.qrels.items())},
        "corpus_fingerprint": ds.corpus_fingerprint(),
        "qrels_fingerprint": ds.qrels_fingerprint(),
        "fingerprint": ds.fingerprint,
        "warnings": list(ds.warnings),
    }


@dataset_app.command("info")
def info(dataset: DatasetOpt = "scifact", strict: StrictOpt = False, json_out: JsonOpt = False):
    """Load the dataset (every check a night runs) and print what it holds."""
    from evolve.cli._common import emit_json, out_console, warn_dataset
    from evolve.datasets import load_dataset

    ds = load_dataset(dataset, strict=strict)
    warn_dataset(ds)
    s = dataset_summary(ds)
    if json_out:
        emit_json(s)
        return
    sources = ", ".join(f"{k} {v}" for k, v in s["by_source"].items() if k != "-")
    if s["splits"]:
        judged = "; ".join(f"{k}: {v['queries']} queries, {v['judgements']} judgements" for k, v in s["splits"].items())
    else:
        judged = "none (a corpus alone: gold comes from --gold DIR, see `evolve gold generate`)"
    lines = [
        ("dataset", s["name"]),
        ("source", s["source"]),
        ("documents", f"{s['documents']}" + (f" ({sources})" if sources else "")),
        ("queries", str(s["queries"])),
        ("judged", judged),
        ("corpus", s["corpus_fingerprint"]),
        ("gold", s["qrels_fingerprint"] if s["splits"] else "-"),
        ("fingerprint", s["fingerprint"]),
    ]
    for key, value in lines:
        out_console.print(f"{key:<12} {value}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
