"""Shared fixtures. Tests use real parts (MiniLM from its PyPI package, faiss, ranx, SQLite, PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from llm_server import llm_server  # noqa: F401  (the session fixture: one served SmolLM2 for every test module)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def shared_dataset(name: str) -> Path:
    """Path under ../shared/datasets, or skip with a clear reason where it is absent (a user's fresh clone)."""
    path = SHARED / name
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must have ../shared/datasets/{name} beside the checkout")
        pytest.skip(f"needs ../shared/datasets/{name} (not part of a fresh clone)")
    return path


@pytest.fixture(scope="session")
def scifact():
    from evolve.datasets import load_dataset

    return load_dataset("scifact")


@pytest.fixture(scope="session")
def scifact_small(scifact):
    """300 documents: every judged document of 60 test queries plus seeded fillers."""
    from evolve.datasets import Dataset

    qids = sorted(scifact.qrels["test"])[:60]
    sub = Dataset(scifact.name, scifact.source, scifact.corpus, scifact.queries,
                  {"test": {q: scifact.qrels["test"][q] for q in qids}})
    return sub.subset(300, "test")


@pytest.fixture
def workspace(tmp_path):
    from evolve.workspace import Workspace

    return Workspace(tmp_path / "ws").ensure()


def run_cli(*args: str, env: dict | None = None, cwd: str | Path | None = None, timeout: float = 900):
    """Run the installed ``evolve`` console script as a real subprocess."""
    exe = Path(sys.executable).with_name("evolve")
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


def seeded_cache(tmp_path_factory, scifact_small) -> Path:
    """A SQLite cache holding the small subset's default-config vectors, embedded once per test session.
    Shared by test_cache.py and test_eval.py: whichever runs first pays for the embedding.
    """
    from evolve.cache import EmbeddingCache
    from evolve.config import PipelineConfig
    from evolve.pipeline import evaluate_config

    path = tmp_path_factory.getbasetemp() / "seed-scifact-small" / "embeddings.sqlite"
    if not path.exists():
        building = path.with_name("building.sqlite")
        cache = EmbeddingCache(building)
        try:
            evaluate_config(PipelineConfig(), scifact_small, "test", cache=cache)
        finally:
            cache.close()
        os.replace(building, path)
    return path


def cli_eval_workspace(tmp_path_factory) -> tuple[Path, dict]:
    """``evolve eval --dataset scifact --split test --subset 300 --json --out OUT --workspace W``, run once per
    session (test_cli.py and test_wheel.py share it). Returns the workspace and {rc, stdout, stderr, out}."""
    base = tmp_path_factory.getbasetemp() / "cli-eval"
    record = base / "result.json"
    if not record.exists():
        base.mkdir(exist_ok=True)
        ws, out = base / "ws", base / "out"
        proc = run_cli("eval", "--dataset", "scifact", "--split", "test", "--subset", "300", "--json",
                       "--workspace", str(ws), "--out", str(out))
        record.write_text(json.dumps({"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr,
                                      "out": str(out)}))
    return base / "ws", json.loads(record.read_text())


def expect_one_line(fn, *parts: str, exc: type[Exception] = Exception) -> str:
    """Call ``fn``, expect ``exc`` with a one-line message containing every part; return the message."""
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    for p in parts:
        assert p in msg, f"{p!r} not in {msg!r}"
    return msg
