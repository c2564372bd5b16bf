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
from evolve.evaluate import PRIMARY_METRIC, PairedTest
from evolve.looks import RULE, LookBudget
from evolve.workspace import Workspace

__all__ = ["Verdict", "decide", "promote", "rollback", "history", "current_champion", "mark_mlflow_champion", "format_p"]

log = logging.getLogger("evolve.promote")


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
    """The outcome of comparing a candidate with the champion on holdout queries.

    ``test`` is the one-sided paired permutation test of ``candidate - champion`` on ``metric`` (None when the
    candidate is the champion itself: nothing was evaluated); ``look`` is this look's place in the holdout's
    Bonferroni family, and the candidate is significantly better when ``p <= alpha / budget``.
    """

    metric: str
    champion_score: float
    candidate_score: float
    test: PairedTest | None
    look: LookBudget | None
    same_config: bool
    candidate_metrics: dict = field(default_factory=dict)
    champion_metrics: dict = field(default_factory=dict)

    @property
    def delta(self) -> float:
        return self.candidate_score - self.champion_score

    @property
    def p_value(self) -> float:
        return self.test.p_value if self.test is not None else 1.0

    @property
    def level(self) -> float:
        return self.look.level if self.look is not None else 0.0

    @property
    def significant(self) -> bool:
        return (not self.same_config) and self.test is not None and self.p_value <= self.level

    @property
    def test_text(self) -> str:
        """``one-sided paired sign-flip permutation test, n = 10000, seed 0``."""
        if self.test is None:
            return "no test"
        how = "all sign assignments" if self.test.exact else "random sign assignments"
        return (f"one-sided paired sign-flip permutation test on {self.metric}, n = {self.test.n_permutations} "
                f"{how}, seed {self.test.seed}")

    @property
    def reason(self) -> str:
        if self.same_config:
            return "the candidate is the current champion itself: nothing to promote"
        p = f"p = {format_p(self.p_value)}"
        where = f"{self.test_text}; {self.look.rule_text()}"
        if self.significant:
            return f"significantly better on holdout {self.metric}: {self.delta:+.4f}, {p} <= {self.level:.3g} ({where})"
        return f"not significantly better on holdout {self.metric}: {self.delta:+.4f}, {p} > {self.level:.3g} ({where})"

    def as_dict(self) -> dict:
        out = {
            "metric": self.metric, "champion": self.champion_score, "candidate": self.candidate_score,
            "delta": self.delta, "p_value": self.p_value, "significant": self.significant,
            "same_config": self.same_config, "reason": self.reason,
        }
        if self.test is not None:
            out.update({"test": "paired sign-flip permutation, one-sided (candidate > champion)",
                        "b": self.test.b, "n_permutations": self.test.n_permutations, "seed": self.test.seed,
                        "exact": self.test.exact, "win": self.test.win, "tie": self.test.tie,
                        "loss": self.test.loss, "n_queries": self.test.n_queries})
        if self.look is not None:
            out.update({"rule": RULE, "look": self.look.look, "holdout_budget": self.look.budget,
                        "alpha": self.look.alpha, "level": self.look.level})
        return out


def format_p(p: float) -> str:
    """A p-value as text, never ``0`` (a permutation p is at least 1/(n+1))."""
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.2g}"


def decide(candidate: PipelineConfig, champion: PipelineConfig, dataset, holdout_qrels: dict, *, look: LookBudget,
           metric: str = PRIMARY_METRIC, cache=None, embedders=None, progress=None, seed: int = 0,
           n_permutations: int = 10000) -> Verdict:
    """Evaluate both configs on the holdout queries (``metric``: the study's own objective) and test
    ``candidate > champion`` with a one-sided paired permutation test at ``look.level``.

    When the candidate is the champion itself nothing is evaluated (no holdout look is taken)."""
    from evolve.embedders import EmbedderPool
    from evolve.evaluate import DEFAULT_METRICS, paired_permutation_test
    from evolve.pipeline import Pipeline
    from evolve.progress import null_progress

    if not holdout_qrels:
        raise EvolveError("no holdout queries: expected the study's holdout split to hold judged queries")
    if candidate.fingerprint() == champion.fingerprint():
        return Verdict(metric, float("nan"), float("nan"), None, None, True)
    from evolve.answer.metrics._context import context_metric_budget

    if context_metric_budget(metric) is not None:
        if not any(dataset.answers.get(q) for q in holdout_qrels):
            raise EvolveError(f"{metric}: expected holdout queries with reference answers, got none")
        # one tokenizer, passage cap and prompt for both (the study's, which the candidate carries): counts made
        # with different tokenizers never compare
        champion = champion.model_copy(update={"answer": candidate.answer})
    pool = embedders or EmbedderPool()
    metrics = list(dict.fromkeys([metric, *DEFAULT_METRICS]))
    results = {}
    try:
        for name, cfg in (("champion", champion), ("candidate", candidate)):
            pipe = Pipeline(cfg, dataset, cache=cache, embedders=pool, progress=progress or null_progress, seed=seed)
            results[name] = pipe.evaluate(holdout_qrels, split="holdout", metrics=metrics)
    finally:
        if embedders is None:
            pool.close()
    cand, champ = results["candidate"], results["champion"]
    test = paired_permutation_test(cand.per_query[metric], champ.per_query[metric], n_permutations=n_permutations,
                                   seed=seed)
    return Verdict(metric, champ.metrics[metric], cand.metrics[metric], test, look, False, cand.metrics, champ.metrics)


def _next_history_path(workspace: Workspace, kind: str) -> Path:
    existing = sorted(workspace.history_dir.glob("*.yaml")) if workspace.history_dir.exists() else []
    n = len(existing) + 1
    return workspace.history_dir / f"{n:04d}-{time.strftime('%Y%m%dT%H%M%S')}-{kind}.yaml"


def promote(workspace: Workspace, candidate: PipelineConfig, verdict: Verdict, *, trial: int | None,
            mlflow_run_id: str | None, study: str | None, holdout_fingerprint: str, report_metrics: dict | None,
            forced: bool = False, export: str | Path | None = None, provenance: dict | None = None) -> dict:
    """Write the new champion atomically and append a history record (which keeps the previous champion and
    reveals the candidate's sealed report-split metrics)."""
    if not verdict.significant and not forced:
        raise EvolveError(f"refusing to promote: {verdict.reason}")
    previous, previous_source = current_champion(workspace)
    # the answer section is the serving side's (which LLM answers), not what the night tuned: it stays
    candidate = candidate.model_copy(update={"answer": previous.answer})
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
    previous = previous.model_copy(update={"answer": current.answer})  # the retrieval goes back; the LLM stays
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


def mark_mlflow_champion(tracking_uri: str, run_id: str, study: str, report_metrics: dict | None = None) -> str | None:
    """Tag the run as champion, reveal its sealed report-split metrics on it (``report_*``), and point the
    registered model alias ``champion`` at it. Returns the model name."""
    from evolve.tracking import _quiet_mlflow

    _quiet_mlflow()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    client.set_tag(run_id, "evolve.champion", "true")
    client.set_tag(run_id, "evolve.promoted_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if report_metrics:
        from evolve.evaluate import mlflow_name

        stamp = int(time.time() * 1000)
        for k, v in report_metrics.items():
            client.log_metric(run_id, "report_" + mlflow_name(k), float(v), timestamp=stamp)
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

