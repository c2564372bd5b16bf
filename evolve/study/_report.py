"""After the night: the best trial, the sealed report-split metrics, and the night's artifacts in MLflow.

Report (test) metrics are never shown where a choice is made (the night's output, its summary and leaderboard,
``evolve status``'s leaderboard, trial runs in MLflow): they are computed for the best ``--report-top`` trials
after tuning, stored sealed in the study, and revealed only for a trial that is promoted.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from evolve.config import PipelineConfig
from evolve.evaluate import DEFAULT_METRICS
from evolve.pipeline import Pipeline
from evolve.study._identity import comparable_trials
from evolve.study._options import ATTR, LATENCY, NightSummary

__all__ = [
    "SEALED",
    "best_trial_info",
    "seal_report",
    "sealed_report",
    "night_artifacts",
]

#: study attribute prefix of the sealed report-split metrics of one trial (never shown before its promotion)
SEALED = ATTR + "sealed_report."


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


def seal_report(study, opts, dataset, splits, cache, embedders, progress, corpus_fp) -> list[int]:
    """Score the best ``opts.report_top`` distinct trials (by tune score) on the report split, after tuning, and
    seal the metrics in the study (``evolve.sealed_report.<trial>``): nothing shows them until that trial is
    promoted (then :func:`sealed_report` reveals them to the history, ``evolve status`` and its MLflow run).
    Returns the trial numbers sealed."""
    from optuna.trial import TrialState

    if opts.report_top <= 0:
        return []
    qrels = splits.qrels(dataset, "report")
    if not qrels:
        return []
    done = comparable_trials(study, corpus_fp, splits.fingerprint(dataset, "tune"), states=(TrialState.COMPLETE,))
    done = [t for t in done if ATTR + "repeat_of" not in t.user_attrs]
    done.sort(key=lambda t: (-t.values[0], t.number))
    sealed = []
    seen_configs = set()
    for t in done:
        if len(sealed) >= opts.report_top:
            break
        cfg_dict = t.user_attrs.get(ATTR + "config")
        if not cfg_dict:
            continue
        key = json.dumps(cfg_dict, sort_keys=True)
        if key in seen_configs:
            continue
        seen_configs.add(key)
        if study.user_attrs.get(SEALED + str(t.number)) is None:
            cfg = PipelineConfig.model_validate(cfg_dict)
            pipe = Pipeline(cfg, dataset, cache=cache, embedders=embedders, progress=progress, seed=splits.seed)
            metrics = list(dict.fromkeys([*(o for o in opts.objectives if o != LATENCY), *DEFAULT_METRICS]))
            ev = pipe.evaluate(qrels, split=splits.report_split, metrics=metrics)
            study.set_user_attr(SEALED + str(t.number), ev.metrics)
        sealed.append(t.number)
    return sealed


def sealed_report(study, trial: int) -> dict:
    """The sealed report-split metrics of ``trial`` (or of the trial it repeats), for the moment it is promoted;
    ``{}`` when none were computed (it was not among the night's ``--report-top`` best)."""
    attrs = study.user_attrs
    numbers = [trial]
    frozen = next((t for t in study.get_trials(deepcopy=False) if t.number == trial), None)
    if frozen is not None and ATTR + "repeat_of" in frozen.user_attrs:
        numbers.append(int(frozen.user_attrs[ATTR + "repeat_of"]))
    for n in numbers:
        for key in (SEALED + str(n), ATTR + f"report.{n}"):  # report.<n>: written before reports were sealed
            if attrs.get(key):
                return dict(attrs[key])
    return {}


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
