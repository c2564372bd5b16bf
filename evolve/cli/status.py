"""``evolve status``: the leaderboard, the champion and the study's trial counts."""

from __future__ import annotations

from typing import Annotated

import typer

from evolve.cli._common import FeedbackUrlOpt, GoldModeOpt, GoldOpt, StorageOpt, StudyOpt, TrackingOpt, WorkspaceOpt

__all__ = ["register"]


def status_command(
    top: Annotated[int, typer.Option("--top", help="Rows of the leaderboard.")] = 10,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    gold: GoldOpt = None,
    gold_mode: GoldModeOpt = None,
    workspace: WorkspaceOpt = None,
    study: StudyOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    feedback_url: FeedbackUrlOpt = None,
):
    """Show the top trials on the current corpus (tune scores), the champion (with its report-split scores, revealed
    when it was promoted), trial counts by state and, when `evolve serve` has collected feedback, its counts, the
    failure list's length, interleaving results and the searches a failing challenger left to the champion."""
    from rich.table import Table

    from evolve.cli._common import emit_json, load_study_view, out_console
    from evolve.leaderboard import format_cell, leaderboard_frame, state_counts
    from evolve.promote import current_champion, history
    from evolve.study import ATTR
    from evolve.tracking import Tracker
    from evolve.workspace import Workspace

    ws = Workspace(workspace).ensure()
    if study is None and not gold and _holds_no_study(ws, storage):
        _serve_only_status(ws, storage, feedback_url, json_out)
        return
    view = load_study_view(ws, study, storage, gold=gold, gold_mode=gold_mode)
    st = view.study
    frame = leaderboard_frame(st, view.corpus_fp, top=top, gold_fp=view.gold_fp)
    counts = state_counts(st)
    champion, source = current_champion(ws)
    tracker = Tracker(tracking_uri or ws.default_tracking_uri, st.study_name)
    tracker.fail_stale_runs(int(st.user_attrs.get(ATTR + "grace_period", 60)))
    runs = tracker.child_runs()
    mlflow_states: dict[str, int] = {}
    for r in runs:
        mlflow_states[r.info.status] = mlflow_states.get(r.info.status, 0) + 1
    tracker.close()
    records = history(ws)
    promotions = [r for r in records if r.get("kind") == "promotion"]
    # the record that made the current champion: the last promotion, unless a rollback came after it
    last = records[-1] if records and records[-1].get("kind") == "promotion" else None
    revealed = (last or {}).get("report_metrics") or {}
    feedback = _feedback_summary(ws, feedback_url)
    if json_out:
        emit_json({
            "study": st.study_name, "counts": counts, "mlflow_trial_runs": mlflow_states,
            "leaderboard": frame.to_dict(orient="records"),
            "champion": {"source": source, "config": champion.to_dict(), "report_metrics": revealed,
                         "trial": (last or {}).get("trial"), "promoted": (last or {}).get("time")},
            "promotions": len(promotions),
            "gold": {**view.gold.spec.to_dict(), "n_queries": view.gold.n_queries, "tune_fingerprint": view.gold_fp},
            "feedback": feedback,
        })
        return
    table = Table(title=f"study {st.study_name}: top {top} on the current corpus and gold", title_justify="left")
    cols = [c for c in ("trial", "objective", "tune_ndcg@10", "tune_recall@100", "tune_mrr@10", "tune_latency_ms",
                        "duration_s", "repeat_of") if c in frame.columns]
    for c in cols:
        table.add_column(c, justify="right")
    table.add_column("params")
    for _, row in frame.iterrows():
        params = ", ".join(f"{k[6:]}={format_cell(k, v)}" for k, v in row.items()
                           if k.startswith("param.") and format_cell(k, v) != "")
        table.add_row(*[format_cell(c, row[c]) for c in cols], params)
    out_console.print(table)
    out_console.print("trials by state: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), highlight=False)
    out_console.print("MLflow trial runs by status: " + (", ".join(f"{k} {v}" for k, v in sorted(mlflow_states.items())) or "none"),
                      highlight=False)
    line = f"champion: {source}"
    if last:
        line += f" (study {last.get('study')} trial {last['trial']}, promoted {last['time']}"
        if revealed:
            line += "; report (test): " + ", ".join(f"{k} {v:.4f}" for k, v in revealed.items())
        line += ")"
    out_console.print(line, highlight=False)
    _print_feedback(feedback)


def _holds_no_study(ws, storage: str | None) -> bool:
    """No --storage and no workspace study file, or a storage without a study: a workspace `evolve serve` uses
    without a night (``--dataset``)."""
    if storage is None and not (ws.path / "optuna.db").exists():
        return True
    from evolve.cli._common import study_names
    from evolve.storage import open_storage

    return not study_names(open_storage(storage or ws.default_storage))


def _serve_only_status(ws, storage: str | None, feedback_url: str | None, json_out: bool) -> None:
    """The champion and the feedback of a workspace that holds no study yet."""
    from evolve.cli._common import emit_json, out_console
    from evolve.promote import current_champion

    champion, source = current_champion(ws)
    feedback = _feedback_summary(ws, feedback_url)
    where = storage or ws.default_storage
    if json_out:
        emit_json({"study": None, "champion": {"source": source, "config": champion.to_dict()}, "feedback": feedback})
        return
    out_console.print(f"study: none in {where} (`evolve run` makes one)", highlight=False, markup=False)
    out_console.print(f"champion: {source}", highlight=False, markup=False)
    _print_feedback(feedback)


def _feedback_summary(ws, feedback_url: str | None) -> dict | None:
    """Counts and interleaving results of the feedback store; None when there is none (status never creates one)."""
    import os

    from evolve.feedback import feedback_path, grade_feedback, interleaving_results, open_feedback_store

    if not (feedback_url or os.environ.get("EVOLVE_FEEDBACK_URL")) and not feedback_path(ws).exists():
        return None
    with open_feedback_store(ws, feedback_url) as fb:
        queries, events = fb.queries(), fb.events()
    failed = [q for q in queries if (q.get("query_attributes") or {}).get("challenger_error")]
    last = max(failed, key=lambda q: q.get("timestamp") or "") if failed else None
    return {"searches": len(queries), "events": len(events),
            "failure_queries": len(grade_feedback(queries, events).failures()),
            "interleaving": [r.as_dict() for r in interleaving_results(queries, events)],
            "challenger_failures": len(failed),
            "challenger_last_error": (last["query_attributes"]["challenger_error"] if last else None),
            "challenger_last_failure": (last.get("timestamp") if last else None)}


def _print_feedback(feedback: dict | None) -> None:
    from evolve.cli._common import out_console

    if feedback is None:
        return
    out_console.print(f"feedback: {feedback['searches']} searches, {feedback['events']} events; "
                      f"failure list: {feedback['failure_queries']} queries (evolve feedback stats)", highlight=False)
    for r in feedback["interleaving"]:
        p = f"{r['p_value']:.4f}" if r["p_value"] >= 1e-4 else f"{r['p_value']:.1e}"
        out_console.print(f"interleaving: challenger {'/'.join(r['challenger_versions'])} vs champion "
                          f"{'/'.join(r['champion_versions'])}: {r['wins']} wins, {r['ties']} ties, {r['losses']} losses, "
                          f"one-sided sign test p = {p}", highlight=False)
    if feedback.get("challenger_failures"):
        out_console.print(f"challenger failures: {feedback['challenger_failures']} searches answered with the "
                          f"champion's list alone (last {feedback['challenger_last_failure']}: "
                          f"{feedback['challenger_last_error']})", highlight=False, markup=False)



def register(app: typer.Typer) -> None:
    app.command("status")(status_command)
