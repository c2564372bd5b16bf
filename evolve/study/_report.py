"""After the night: the best trial, report-split metrics, and the night's artifacts in MLflow."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from evolve.config import PipelineConfig
from evolve.pipeline import Pipeline
from evolve.study._identity import comparable_trials
from evolve.study._options import ATTR, NightSummary

__all__ = [
    "best_trial_info",
    "report_best",
    "night_artifacts",
]


def best_trial_info(study, corpus_fp: str | None, gold_fp: str | None = None) -> dict | None:
    """The best completed trial on this corpus and tune gold (None: any), or None when there is none."""
    from optuna.trial import TrialState

    done = comparable_trials(study, corpus_fp, gold_fp, states=(TrialState.COMPLETE,))
    if not done:
        return None
    if len(study.directions) > 1:
        best = sorted(done, key=lambda t: -t.values[0])[0]
    else:
        best = max(done, key=lambda t: t.value)
    return {"number": best.number, "value": best.values[0], "values": list(best.values), "params": best.params,
            "mlflow_run_id": best.user_attrs.get(ATTR + "mlflow_run_id")}


def report_best(study, opts, dataset, splits, tracker, cache, embedders, progress, corpus_fp) -> dict:
    """Report metrics for the best trials by tune score, computed after tuning; no decision reads them."""
    from optuna.trial import TrialState

    qrels = splits.qrels(dataset, "report")
    if not qrels:
        return {}
    done = comparable_trials(study, corpus_fp, splits.fingerprint(dataset, "tune"), states=(TrialState.COMPLETE,))
    done = [t for t in done if ATTR + "repeat_of" not in t.user_attrs]
    done.sort(key=lambda t: -t.values[0])
    out = {}
    seen_configs = set()
    for t in done:
        if len(out) >= opts.report_top:
            break
        cfg_dict = t.user_attrs.get(ATTR + "config")
        if not cfg_dict:
            continue
        key = json.dumps(cfg_dict, sort_keys=True)
        if key in seen_configs:
            continue
        seen_configs.add(key)
        cfg = PipelineConfig.model_validate(cfg_dict)
        pipe = Pipeline(cfg, dataset, cache=cache, embedders=embedders, progress=progress, seed=splits.seed)
        ev = pipe.evaluate(qrels, split=splits.report_split)
        run_id = t.user_attrs.get(ATTR + "mlflow_run_id")
        if run_id:
            tracker.log_metrics(run_id, ev.metrics, prefix="report_")
        study.set_user_attr(ATTR + f"report.{t.number}", ev.metrics)
        out[t.number] = ev.metrics
    return out


def night_artifacts(study, opts, summary: NightSummary, tracker, parent_id, corpus_fp, gold_fp=None) -> None:

    from evolve._io import atomic_write_text
    from evolve.leaderboard import leaderboard_frame, plot_study, summary_markdown

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frame = leaderboard_frame(study, corpus_fp, gold_fp=gold_fp)
        atomic_write_text(folder / "leaderboard.csv", frame.to_csv(index=False))
        atomic_write_text(folder / "summary.md", summary_markdown(study, opts, summary, frame))
        for path in plot_study(study, folder):
            tracker.log_artifact(parent_id, path, "plots")
        tracker.log_artifact(parent_id, folder / "leaderboard.csv")
        tracker.log_artifact(parent_id, folder / "summary.md")
