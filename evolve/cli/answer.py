"""``evolve answer eval``: answers measured on judged queries (:mod:`evolve.answer._eval`), one MLflow run."""

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
    StrictOpt,
    TrackingOpt,
    WorkspaceOpt,
)

__all__ = ["answer_app", "register", "format_summary"]

answer_app = typer.Typer(
    name="answer",
    help="Answers from the champion's passages with the team's LLM: measure them.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def _num(v, fmt: str = ".4f") -> str:
    return "-" if v is None else format(v, fmt)


def format_summary(summ: dict, run_id: str) -> list[str]:
    """The printed summary: the same lines in the same order for any outcome (``-`` where a figure is undefined)."""
    m = summ["metrics"]
    lines = [
        f"answer eval: {summ['dataset']} / {summ['split']}, {summ['n_queries']} questions, LLM {summ['llm']['model']}, "
        f"{m['n_errors']} failed answers",
        f"correctness: EM {_num(m['em'])} F1 {_num(m['f1'])} ({m['n_with_reference']} with reference answers)",
        f"citations: precision {_num(m['citation_precision'])} recall {_num(m['citation_recall'])} "
        f"({m['n_citations']} citations, {m['n_answered']} answered)",
        f"refusal: refusal rate {_num(m['refusal_rate'])} (unanswerable, {m['n_unanswerable']}) "
        f"false-refusal rate {_num(m['false_refusal_rate'])} (answerable, {m['n_answerable']})",
        f"latency: ttft p50 {_num(m['ttft_p50_ms'], '.0f')} ms p95 {_num(m['ttft_p95_ms'], '.0f')} ms, "
        f"total p50 {_num(m['total_p50_ms'], '.0f')} ms p95 {_num(m['total_p95_ms'], '.0f')} ms",
    ]
    if summ.get("judge") is not None:
        lines.append(
            f"support (ALCE): recall {_num(m.get('support_recall'))} precision "
            f"{_num(m.get('support_precision'))} ({m.get('n_judged_answers', 0)} answers, "
            f"{summ['judge']['failed']} unreadable verdicts)"
        )
    lines.append(f"mlflow run {run_id} (experiment answer-eval)")
    return lines


def _progress(total: int):
    """One stderr line per finished answer (a long run on a small CPU shows that it moves)."""
    import threading

    from evolve.cli._common import err_console

    lock = threading.Lock()
    done = [0]

    def on_row(row) -> None:
        with lock:
            done[0] += 1
            n = done[0]
        state = "error" if row.error else ("refused" if row.refused else "answered")
        secs = "-" if row.total_ms is None else f"{row.total_ms / 1000:.1f} s"
        err_console.print(f"answer {n}/~{total}: {row.qid} {row.variant} {state} {secs}", highlight=False, markup=False)

    return on_row


@answer_app.command("eval")
def eval_command(
    dataset: DatasetOpt = "scifact",
    split: Annotated[
        str | None,
        typer.Option("--split", help="Qrels split to answer (gold: 'gold', ...).", show_default="test, else gold"),
    ] = None,
    gold: GoldOpt = None,
    gold_mode: GoldModeOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    judge: Annotated[
        bool, typer.Option("--judge", help="Also let the LLM judge each sentence's support (ALCE).")
    ] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Answer a seeded sample of N questions.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the --limit sample.")] = 0,
    parallel: Annotated[
        int,
        typer.Option(
            "--parallel", min=1, max=64, help="Questions asked at once (latency then includes the LLM's queue)."
        ),
    ] = 1,
    json_out: JsonOpt = False,
    strict: StrictOpt = False,
    workspace: WorkspaceOpt = None,
    tracking_uri: TrackingOpt = None,
    cache_url: CacheUrlOpt = None,
):
    """Answer judged queries as `evolve serve` does and measure the answers: EM/F1, citations, refusal, latency."""
    from evolve.answer import Answerer
    from evolve.answer._eval import answer_eval
    from evolve.answer._eval_record import EXPERIMENT, record_answer_eval, summary
    from evolve.cache import EmbeddingCache
    from evolve.cli._common import emit_json, err_console, out_console, pipeline_config, rich_progress, warn_dataset
    from evolve.datasets import load_dataset
    from evolve.gold import GoldSpec, apply_gold
    from evolve.pipeline import Pipeline
    from evolve.splits import GOLD_SPLIT
    from evolve.tracking import Tracker
    from evolve.workspace import Workspace

    ws = Workspace(workspace, cache_url).ensure()
    cfg = pipeline_config(ws, config, set_)
    spec = GoldSpec.parse(gold, gold_mode)
    ds = load_dataset(dataset, strict=strict)
    ds, _ = apply_gold(ds, spec, strict=strict)
    warn_dataset(ds)
    if split is None:
        split = "test" if "test" in ds.qrels or GOLD_SPLIT not in ds.qrels else GOLD_SPLIT
    qrels = ds.split_qrels(split)
    if not cfg.answer.configured:
        from evolve.errors import ConfigError

        raise ConfigError(
            "answer.base_url and answer.model: expected the LLM to answer with (--set answer.base_url=URL "
            "--set answer.model=NAME, or the config's answer section), got none set"
        )
    answerer = Answerer(cfg.answer)
    answerer.client.identity()  # an unreachable LLM, or one not serving answer.model: one line, now
    cache = EmbeddingCache.open(ws)
    pipe = Pipeline(cfg, ds, cache=cache, progress=rich_progress)
    try:
        result = answer_eval(
            pipe,
            answerer,
            qrels,
            references=ds.answers,
            limit=limit,
            seed=seed,
            parallel=parallel,
            judge=judge,
            on_row=_progress(2 * min(limit, len(qrels)) if limit else 2 * len(qrels)),
        )
    finally:
        pipe.close()
        cache.close()
        answerer.close()
    options = {"limit": limit, "seed": seed, "parallel": parallel, "judge": judge, "split": split}
    summ = summary(result, config=cfg, dataset=ds, split=split, options=options)
    uri = tracking_uri or ws.default_tracking_uri
    artifact_root = ws.artifacts_dir if uri.startswith(("sqlite:", "file:", "/")) else None
    tracker = Tracker(uri, EXPERIMENT, artifact_root=artifact_root)
    try:
        run_id = record_answer_eval(tracker, result, summ, cfg)
    finally:
        tracker.close()
    summ["mlflow_run_id"] = run_id
    if json_out:
        emit_json(summ)
        return
    for line in format_summary(summ, run_id):
        out_console.print(line, highlight=False, markup=False)
    err_console.print("the per-question table: the run's artifact per_query.json", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(answer_app, name="answer")
