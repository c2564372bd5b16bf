"""``evolve feedback export | stats | delete``: what people marked on `evolve serve`'s answers."""

from __future__ import annotations

from typing import Annotated

import typer

from evolve.cli._common import FeedbackUrlOpt, JsonOpt, WorkspaceOpt

__all__ = ["register", "feedback_app"]

feedback_app = typer.Typer(help="The feedback people gave on `evolve serve` (UBI 1.3.0 records): export as gold, "
                                "stats, delete.", no_args_is_help=True)


def _store(workspace, feedback_url):
    from evolve.feedback import open_feedback_store
    from evolve.workspace import Workspace

    return open_feedback_store(Workspace(workspace).ensure(), feedback_url)


@feedback_app.command("export")
def export_command(
    out: Annotated[str, typer.Option("--out", help="The gold folder to write (replaced all or nothing).")],
    fmt: Annotated[str, typer.Option("--format", help="trec: the gold folder plus qrels.trec; quepid: also quepid.csv (query,docid,rating).")] = "trec",
    since: Annotated[str | None, typer.Option("--since", help="Only searches and events from this date (2025-03-01 or an ISO date-time).")] = None,
    min_impressions: Annotated[int, typer.Option("--min-impressions", help="A click counts only for a document shown this often for the query.")] = 5,
    workspace: WorkspaceOpt = None,
    feedback_url: FeedbackUrlOpt = None,
    json_out: JsonOpt = False,
):
    """Turn events into graded judgements (answered 3, useful 2, a click with COEC >= 1 gives 1, not_useful 0) and
    write them as a gold folder, for `evolve run --gold DIR`."""
    from evolve.cli._common import emit_json, out_console
    from evolve.errors import ConfigError
    from evolve.feedback import GradeRules, export_gold, parse_when

    if min_impressions < 1:
        raise ConfigError(f"--min-impressions: expected at least 1, got {min_impressions}")
    when = parse_when(since, "--since") if since else None
    with _store(workspace, feedback_url) as store:
        summary = export_gold(store, out, fmt=fmt, since=when, rules=GradeRules(min_impressions=min_impressions))
    if json_out:
        emit_json({"out": str(summary.out), "queries": summary.queries, "judgements": summary.judgements,
                   "by_grade": {str(k): v for k, v in summary.by_grade.items()}, "files": summary.files,
                   "skipped_no_positive": summary.skipped_no_positive, "without_text": summary.without_text})
        return
    grades = ", ".join(f"grade {g}: {n}" for g, n in summary.by_grade.items())
    out_console.print(f"wrote {summary.out}: {summary.queries} queries, {summary.judgements} judgements ({grades})",
                      highlight=False)
    if summary.skipped_no_positive or summary.without_text:
        out_console.print(f"left out: {summary.skipped_no_positive} queries with no grade above 0, "
                          f"{summary.without_text} searches stored without their text", highlight=False)


def _fmt_p(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


@feedback_app.command("stats")
def stats_command(
    top: Annotated[int, typer.Option("--top", help="Rows of the failure list.")] = 20,
    since: Annotated[str | None, typer.Option("--since", help="Only from this date.")] = None,
    workspace: WorkspaceOpt = None,
    feedback_url: FeedbackUrlOpt = None,
    json_out: JsonOpt = False,
):
    """Counts, the failure list (queries whose list answered nothing, whose answer was wrong, did not answer or
    was refused) and interleaving results."""
    from evolve.cli._common import emit_json, out_console
    from evolve.feedback import ANSWER_ACTIONS, grade_feedback, interleaving_results, parse_when

    when = parse_when(since, "--since") if since else None
    with _store(workspace, feedback_url) as store:
        location = store.location
        queries, events = store.queries(when), store.events(when)
    by_action: dict[str, int] = {}
    for e in events:
        by_action[e["action_name"]] = by_action.get(e["action_name"], 0) + 1
    judged = grade_feedback(queries, events)
    all_failures = judged.failures()
    failures = all_failures[:top]
    answers = {"written": sum(judged.answers.values()), "refused": sum(judged.refused.values()),
               "failed": judged.answers_failed,
               **{a: by_action.get(a, 0) for a in ANSWER_ACTIONS}}
    inter = interleaving_results(queries, events)
    clients = {q["client_id"] for q in queries} | {e["client_id"] for e in events}
    if json_out:
        emit_json({"store": location, "searches": len(queries), "clients": len(clients), "events": len(events),
                   "by_action": by_action, "without_text": judged.without_text,
                   "answers": answers,
                   "failures": [{"query": f.text, "no_answer": f.no_answer, "answer_wrong": f.wrong,
                                 "answer_no_answer": f.not_answered, "refused": f.refused} for f in failures],
                   "interleaving": [r.as_dict() for r in inter]})
        return
    acts = ", ".join(f"{a} {n}" for a, n in sorted(by_action.items())) or "none"
    out_console.print(f"feedback in {location}: {len(queries)} searches by {len(clients)} clients, "
                      f"{len(events)} events ({acts})", highlight=False)
    if judged.without_text:
        out_console.print(f"{judged.without_text} searches were stored without their text (--no-query-text)",
                          highlight=False)
    if answers["written"] or answers["failed"] or any(answers[a] for a in ANSWER_ACTIONS):
        failed = f", {answers['failed']} failed" if answers["failed"] else ""
        out_console.print(f"answers: {answers['written']} written, {answers['refused']} refused{failed}; marked helpful "
                          f"{answers['answer_helpful']}, wrong {answers['answer_wrong']}, didn't answer "
                          f"{answers['answer_no_answer']}; citations opened {answers['citation_click']}",
                          highlight=False)
    if not all_failures:
        out_console.print("failure list: none", highlight=False)
    else:
        out_console.print(f"failure list, {len(all_failures)} queries"
                          + (f" (the first {len(failures)})" if len(failures) < len(all_failures) else "") + ":",
                          highlight=False)
        out_console.print(f"  {'no_answer':>9}  {'wrong':>5}  {'didnt_answer':>12}  {'refused':>7}  query",
                          highlight=False)
        for f in failures:
            out_console.print(f"  {f.no_answer:>9}  {f.wrong:>5}  {f.not_answered:>12}  {f.refused:>7}  {f.text}",
                              highlight=False, markup=False)
    for r in inter:
        out_console.print(
            f"interleaving: challenger {'/'.join(r.challenger_versions)} vs champion {'/'.join(r.champion_versions)}: "
            f"{r.wins} wins, {r.ties} ties, {r.losses} losses over {r.queries} queries ({r.searches} searches), "
            f"one-sided sign test "
            f"p = {_fmt_p(r.p_value)}", highlight=False)


@feedback_app.command("delete")
def delete_command(
    client: Annotated[str | None, typer.Option("--client", help="Remove everything of this client_id (a person who asks to be forgotten).")] = None,
    before: Annotated[str | None, typer.Option("--before", help="Remove searches and events older than this date.")] = None,
    workspace: WorkspaceOpt = None,
    feedback_url: FeedbackUrlOpt = None,
):
    """Remove a person's searches and events (--client ID), or an old period's (--before DATE)."""
    from evolve.cli._common import out_console
    from evolve.errors import ConfigError
    from evolve.feedback import parse_when

    if (client is None) == (before is None):
        raise ConfigError("expected exactly one of --client ID or --before DATE")
    with _store(workspace, feedback_url) as store:
        if client is not None:
            nq, ne = store.delete_client(client)
            what = f"of client '{client}'"
        else:
            nq, ne = store.delete_before(parse_when(before, "--before"))
            what = f"before {before}"
    out_console.print(f"deleted {nq} searches and {ne} events {what}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(feedback_app, name="feedback")


#: the value of `evolve run --gold` that means "tonight's export of the feedback store"
FEEDBACK_GOLD = "feedback"


def resolve_feedback_gold(ws, gold: list[str] | None, feedback_url: str | None) -> list[str] | None:
    """`evolve run --gold feedback [--feedback-url URL]`: export the feedback store, at the start of the night, to
    ``<workspace>/gold/feedback-YYYYMMDD`` (replaced all or nothing) and put that folder where ``feedback`` stood.
    Other ``--gold`` values pass through. A store with nothing to export is a one-line error naming it."""
    import time

    from evolve.feedback import export_gold, open_feedback_store

    if not gold or FEEDBACK_GOLD not in gold:
        return gold
    out = ws.path / "gold" / f"feedback-{time.strftime('%Y%m%d')}"
    with open_feedback_store(ws, feedback_url) as store:
        export_gold(store, out)
    return [str(out) if g == FEEDBACK_GOLD else g for g in gold]
