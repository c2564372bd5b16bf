"""Leaderboards, plots and the one-page night summary."""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["leaderboard_frame", "plot_study", "summary_markdown", "state_counts", "format_cell"]

log = logging.getLogger("evolve.leaderboard")
ATTR = "evolve."


def state_counts(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


#: leaderboard columns that hold whole numbers (pandas turns them into floats when a row lacks one)
INT_COLUMNS = ("trial", "repeat_of")


def format_cell(column: str, value) -> str:
    """One leaderboard cell as text: trial numbers as integers, missing values empty, scores to 4 places."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if column in INT_COLUMNS or (column.startswith("param.") and isinstance(value, float) and value.is_integer()):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def leaderboard_frame(study, corpus_fp: str | None, top: int | None = None, *, gold_fp: str | None = None):
    """Completed trials on the current corpus and tune gold (None: any), best first: number, tune metrics,
    duration, params.

    Tune metrics only: report-split metrics are sealed until a trial is promoted (never beside the choices)."""
    import pandas as pd
    from optuna.trial import TrialState

    from evolve.study._identity import comparable_trials

    rows = []
    for t in comparable_trials(study, corpus_fp, gold_fp, states=(TrialState.COMPLETE,)):
        metrics = t.user_attrs.get(ATTR + "metrics") or {}
        row = {"trial": t.number, "state": t.state.name, "objective": t.values[0]}
        for i, v in enumerate(t.values[1:], 1):
            row[f"objective_{i}"] = v
        for m in ("ndcg@10", "recall@100", "mrr@10", "map@100", "latency_ms"):
            if m in metrics:
                row[f"tune_{m}"] = metrics[m]
        row["duration_s"] = t.user_attrs.get(ATTR + "duration_seconds")
        row["repeat_of"] = t.user_attrs.get(ATTR + "repeat_of")
        row["mlflow_run_id"] = t.user_attrs.get(ATTR + "mlflow_run_id")
        row.update({f"param.{k}": v for k, v in t.params.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.sort_values(["objective", "trial"], ascending=[False, True]).reset_index(drop=True)
    return frame.head(top) if top else frame


def plot_study(study, folder: Path) -> list[Path]:
    """Optuna's matplotlib plots as PNG: optimization history, parameter importances, parallel coordinates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis
    from optuna.trial import TrialState

    out: list[Path] = []
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return out
    multi = len(study.directions) > 1
    target = (lambda t: t.values[0]) if multi else None
    name = "objective 0" if multi else "objective"
    plots = {
        "optimization_history.png": lambda: vis.plot_optimization_history(study, target=target, target_name=name),
        "param_importances.png": lambda: vis.plot_param_importances(study, target=target, target_name=name),
        "parallel_coordinate.png": lambda: vis.plot_parallel_coordinate(study, target=target, target_name=name),
    }
    if multi:
        plots["pareto_front.png"] = lambda: vis.plot_pareto_front(study)
    import warnings

    for filename, make in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = make()
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(10, 6)
            fig.tight_layout()
            path = folder / filename
            fig.savefig(path, dpi=100)
            plt.close(fig)
            out.append(path)
        except Exception as err:  # e.g. importances need >= 2 completed trials with varying params
            log.info("plot %s skipped: %s", filename, err)
            plt.close("all")
    return out


def summary_markdown(study, opts, summary, frame) -> str:
    lines = [
        f"# Night summary: study `{study.study_name}`",
        "",
        f"- trials this night: {len(summary.trial_numbers)} ({summary.n_complete} complete, {summary.n_pruned} pruned, "
        f"{summary.n_failed} failed, {summary.n_repeats} answered from earlier results)",
        f"- pruning saved about {summary.pruned_saved_seconds:.0f} s",
        f"- wall time: {summary.wall_seconds:.0f} s",
        f"- objectives: {', '.join(opts.objectives)} (tune queries)",
    ]
    if summary.best:
        lines.append(f"- best trial on the current corpus: #{summary.best['number']} with {summary.best['value']:.4f}")
    if summary.sealed_report:
        lines.append(f"- report (test) metrics of {len(summary.sealed_report)} best trial(s) computed and sealed: "
                     "shown only once a trial is promoted")
    if not frame.empty:
        cols = [c for c in frame.columns if not c.startswith("param.") and c not in ("mlflow_run_id", "state")]
        top = frame.head(10)[cols]
        lines += ["", "## Leaderboard (top 10)", "", "| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
        for _, r in top.iterrows():
            lines.append("| " + " | ".join(format_cell(c, r[c]) for c in cols) + " |")
    lines += ["", "Next: `evolve promote-config --best` to test the winner against the champion on holdout queries."]
    return "\n".join(lines) + "\n"
