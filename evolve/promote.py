"""Champion selection: a candidate replaces the champion only when it is significantly better on holdout queries.

The champion lives in ``<workspace>/champion.yaml`` (written atomically); every promotion or rollback appends a
record to ``<workspace>/history/``. The shipped ``configs/default.yaml`` is only the starting point.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from evolve._io import atomic_write_text
from evolve.config import PipelineConfig, config_to_yaml, load_config
from evolve.errors import EvolveError
from evolve.evaluate import PRIMARY_METRIC, compare_runs
from evolve.workspace import Workspace

__all__ = ["Verdict", "decide", "promote", "rollback", "history", "current_champion", "HOLDOUT_REUSE_WARN"]

log = logging.getLogger("evolve.promote")

HOLDOUT_REUSE_WARN = 5


def current_champion(workspace: Workspace) -> tuple[PipelineConfig, str]:
    """The champion config and where it came from."""
    if workspace.champion_path.exists():
        return load_config(workspace.champion_path), str(workspace.champion_path)
    return load_config(), "configs/default.yaml (shipped default)"


def history(workspace: Workspace) -> list[dict]:
    folder = workspace.history_dir
    if not folder.exists():
        return []
    records = []
    for p in sorted(folder.glob("*.yaml")):
        records.append(yaml.safe_load(p.read_text(encoding="utf-8")))
    return records


@dataclass
class Verdict:
    """The outcome of comparing a candidate with the champion on holdout queries."""

    metric: str
    champion_score: float
    candidate_score: float
    p_value: float
    win: int
    tie: int
    loss: int
    n_queries: int
    max_p: float
    same_config: bool
    candidate_metrics: dict = field(default_factory=dict)
    champion_metrics: dict = field(default_factory=dict)

    @property
    def delta(self) -> float:
        return self.candidate_score - self.champion_score

    @property
    def significant(self) -> bool:
        return (not self.same_config) and self.delta > 0 and self.p_value <= self.max_p

    @property
    def reason(self) -> str:
        if self.same_config:
            return "the candidate is the current champion itself: nothing to promote"
        if self.delta <= 0:
            return f"the candidate is not better on holdout ({self.delta:+.4f})"
        if self.p_value > self.max_p:
            return f"the gain {self.delta:+.4f} is not significant (p = {self.p_value:.4f} > {self.max_p})"
        return f"significantly better: {self.delta:+.4f}, p = {self.p_value:.4f} <= {self.max_p}"

    def as_dict(self) -> dict:
        return {
            "metric": self.metric, "champion": self.champion_score, "candidate": self.candidate_score,
            "delta": self.delta, "p_value": self.p_value, "win": self.win, "tie": self.tie, "loss": self.loss,
            "n_queries": self.n_queries, "max_p": self.max_p, "significant": self.significant,
            "same_config": self.same_config, "reason": self.reason,
        }


def decide(candidate: PipelineConfig, champion: PipelineConfig, dataset, holdout_qrels: dict, *, cache=None,
           embedders=None, progress=None, metric: str = PRIMARY_METRIC, max_p: float = 0.05, seed: int = 0) -> Verdict:
    """Evaluate both configs on the holdout queries and run ranx's paired Fisher randomization test."""
    from evolve.embedders import EmbedderPool
    from evolve.pipeline import Pipeline
    from evolve.progress import null_progress

    if not holdout_qrels:
        raise EvolveError("no holdout queries: expected the study's holdout split to hold judged queries")
    pool = embedders or EmbedderPool()
    results = {}
    try:
        for name, cfg in (("champion", champion), ("candidate", candidate)):
            pipe = Pipeline(cfg, dataset, cache=cache, embedders=pool, progress=progress or null_progress, seed=seed)
            results[name] = pipe.evaluate(holdout_qrels, split="holdout")
    finally:
        if embedders is None:
            pool.close()
    same = candidate.fingerprint() == champion.fingerprint()
    if same:
        score = results["champion"].metrics[metric]
        n = results["champion"].n_queries
        return Verdict(metric, score, score, 1.0, 0, n, 0, n, max_p, True,
                       results["candidate"].metrics, results["champion"].metrics)
    cmp = compare_runs(holdout_qrels, {"champion": results["champion"].run, "candidate": results["candidate"].run},
                       metric, max_p=max_p)
    return Verdict(metric, cmp["means"]["champion"], cmp["means"]["candidate"], cmp["p_value"], cmp["win"], cmp["tie"],
                   cmp["loss"], results["candidate"].n_queries, max_p, False,
                   results["candidate"].metrics, results["champion"].metrics)


def _next_history_path(workspace: Workspace, kind: str) -> Path:
    existing = sorted(workspace.history_dir.glob("*.yaml")) if workspace.history_dir.exists() else []
    n = len(existing) + 1
    return workspace.history_dir / f"{n:04d}-{time.strftime('%Y%m%dT%H%M%S')}-{kind}.yaml"


def holdout_uses(workspace: Workspace, holdout_fingerprint: str) -> int:
    return sum(1 for r in history(workspace) if r.get("kind") == "promotion" and r.get("holdout_fingerprint") == holdout_fingerprint)


def promote(workspace: Workspace, candidate: PipelineConfig, verdict: Verdict, *, trial: int | None,
            mlflow_run_id: str | None, study: str | None, holdout_fingerprint: str, report_metrics: dict | None,
            forced: bool = False, export: str | Path | None = None, provenance: dict | None = None) -> dict:
    """Write the new champion atomically and append a history record (which keeps the previous champion)."""
    if not verdict.significant and not forced:
        raise EvolveError(f"refusing to promote: {verdict.reason}")
    previous, previous_source = current_champion(workspace)
    earlier = holdout_uses(workspace, holdout_fingerprint)
    record = {
        "kind": "promotion",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "study": study,
        "trial": trial,
        "mlflow_run_id": mlflow_run_id,
        "forced": forced,
        "verdict": verdict.as_dict(),
        "holdout_metrics": {"candidate": verdict.candidate_metrics, "champion": verdict.champion_metrics},
        "report_metrics": report_metrics or {},
        "holdout_fingerprint": holdout_fingerprint,
        "earlier_promotions_on_this_holdout": earlier,
        "config": candidate.to_dict(),
        "previous_champion": previous.to_dict(),
        "previous_source": previous_source,
        "had_champion_file": workspace.champion_path.exists(),
        "provenance": provenance or {},
    }
    atomic_write_text(workspace.champion_path, _champion_yaml(candidate, record))
    atomic_write_text(_next_history_path(workspace, "promotion"), yaml.safe_dump(record, sort_keys=False, allow_unicode=True))
    if export:
        atomic_write_text(export, _champion_yaml(candidate, record))
    return record


def _champion_yaml(cfg: PipelineConfig, record: dict) -> str:
    head = (f"# champion promoted {record['time']} from study {record.get('study')!r} trial {record.get('trial')}"
            f"{' (FORCED)' if record.get('forced') else ''}; see history/ for the evidence\n")
    return head + config_to_yaml(cfg)


def rollback(workspace: Workspace) -> dict:
    """Restore the champion before the latest promotion (or rollback), recording it in the history."""
    records = history(workspace)
    if not records:
        raise EvolveError(f"nothing to roll back: {workspace.history_dir} holds no promotion")
    last = records[-1]
    previous = PipelineConfig.model_validate(last["previous_champion"])
    current, current_source = current_champion(workspace)
    record = {
        "kind": "rollback",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "undoes": last.get("time"),
        "config": previous.to_dict(),
        "previous_champion": current.to_dict(),
        "previous_source": current_source,
        "had_champion_file": workspace.champion_path.exists(),
    }
    if last.get("had_champion_file", True):
        atomic_write_text(workspace.champion_path, f"# champion restored by rollback {record['time']}\n" + config_to_yaml(previous))
    else:
        workspace.champion_path.unlink(missing_ok=True)  # back to the shipped default
    atomic_write_text(_next_history_path(workspace, "rollback"), yaml.safe_dump(record, sort_keys=False, allow_unicode=True))
    return record


def mark_mlflow_champion(tracking_uri: str, run_id: str, study: str) -> str | None:
    """Tag the run as champion and point the registered model alias ``champion`` at it. Returns the model name."""
    from evolve.tracking import _quiet_mlflow

    _quiet_mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    client.set_tag(run_id, "evolve.champion", "true")
    client.set_tag(run_id, "evolve.promoted_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    name = f"{study}-pipeline"
    try:
        try:
            client.create_registered_model(name, description="evolve champion pipelines (alias: champion)")
        except Exception:
            pass  # exists
        run = client.get_run(run_id)
        source = f"{run.info.artifact_uri}/config.yaml"
        version = client.create_model_version(name, source=source, run_id=run_id)
        client.set_registered_model_alias(name, "champion", version.version)
        return name
    except Exception as err:
        log.warning("could not set the registered-model alias 'champion' (%s); the run is tagged evolve.champion=true", err)
        return None


__all__ += ["mark_mlflow_champion", "holdout_uses"]
