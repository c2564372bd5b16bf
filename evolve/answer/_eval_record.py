"""The MLflow record of one ``evolve answer eval``: one run in the experiment ``answer-eval`` with the full config
(params), provenance (git commit, package versions, dataset and qrels fingerprints, the prompts' sha256), the
LLM's model id, the metrics, and the per-question table (``per_query.json``) with ``config.yaml`` and
``summary.json`` as artifacts."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["EXPERIMENT", "record_answer_eval", "summary"]

EXPERIMENT = "answer-eval"


def summary(result, *, config, dataset, split: str, options: dict[str, Any]) -> dict[str, Any]:
    """What the command prints with ``--json`` and stores as ``summary.json``."""
    from evolve.answer.prompts import load_answer_prompt
    from evolve.provenance import provenance

    prompts = {lang: load_answer_prompt(config.answer.prompt_version, lang).provenance() for lang in ("en", "ko")}
    return {
        "dataset": dataset.name,
        "split": split,
        "n_queries": len(result.qids),
        "metrics": result.metrics,
        "llm": result.llm,
        "judge": result.judge,
        "options": options,
        "dataset_fingerprint": dataset.fingerprint,
        "qrels_fingerprint": dataset.qrels_fingerprint(),
        "answer_prompts": prompts,
        "provenance": provenance(),
    }


def record_answer_eval(tracker, result, summ: dict[str, Any], config) -> str:
    """Log one finished run; returns its run id."""
    from evolve._io import atomic_write_json, atomic_write_text
    from evolve.config import config_to_yaml, flatten

    prov = summ["provenance"]
    tags = {
        "evolve_kind": "answer-eval",
        "git_commit": prov["git_commit"],
        "dataset": summ["dataset"],
        "dataset_fingerprint": summ["dataset_fingerprint"],
        "qrels_fingerprint": summ["qrels_fingerprint"],
        "split": summ["split"],
        "llm_model": result.llm.get("model"),
        "llm_root": result.llm.get("root", ""),
        "python": prov["python"],
        **{f"version.{k}": v for k, v in prov["packages"].items()},
        **{f"answer_prompt.{lang}.sha256": p["sha256"] for lang, p in summ["answer_prompts"].items()},
    }
    run_id = tracker.start_run(f"answer-eval-{time.strftime('%Y%m%d-%H%M%S')}", tags=tags)
    try:
        params = {f"config.{k}": v for k, v in flatten(config.to_dict()).items()}
        params.update({f"option.{k}": v for k, v in summ["options"].items()})
        params["llm.model_id"] = result.llm.get("model")
        tracker.log_params(run_id, params)
        tracker.log_metrics(run_id, {k: v for k, v in summ["metrics"].items() if isinstance(v, (int, float))})
        with tempfile.TemporaryDirectory(prefix="evolve-answer-eval-") as tmp:
            folder = Path(tmp)
            atomic_write_json(folder / "per_query.json", [r.record() for r in result.rows])
            atomic_write_json(folder / "summary.json", summ)
            atomic_write_text(folder / "config.yaml", config_to_yaml(config))
            tracker.log_artifacts(run_id, folder)
    except BaseException:
        tracker.end_run(run_id, "FAILED")
        raise
    tracker.end_run(run_id)
    return run_id
