"""Issue 2: the built wheel carries its configs and the bundled SciFact, and runs from outside the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, cli_eval_workspace


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel, built without isolation and installed with --no-deps into a bare target folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)],
                   check=True, capture_output=True, text=True, timeout=600)
    (wheel,) = dist.glob("evolve-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "evolve/__init__.py",
        "evolve/__main__.py",
        "evolve/cli/__init__.py",
        "evolve/_data/configs/default.yaml",
        "evolve/_data/datasets/scifact/corpus.jsonl.gz",
        "evolve/_data/datasets/scifact/queries.jsonl.gz",
        "evolve/_data/datasets/scifact/qrels/test.tsv",
        "evolve/_data/datasets/scifact/README.md",
        "evolve/gold/prompts/generate.en.yaml",  # the LLM prompts are package data
        "evolve/gold/prompts/generate.ko.yaml",
        "evolve/gold/prompts/judge.en.yaml",
    ):
        assert required in names, required
    assert not any(n.startswith("tests/") or "__pycache__" in n for n in names)
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, text=True, timeout=600)
    return site


def _outside(site: Path, cwd: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    env.pop("EVOLVE_HOME", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


@pytest.mark.slow
def test_wheel_runs_from_outside_the_repo(installed, tmp_path, tmp_path_factory):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    probe = _outside(installed, cwd, "-c", (
        "import json, evolve\n"
        "from evolve.config import shipped_path, load_config, PipelineConfig\n"
        "from evolve.datasets import bundled_path\n"
        "print(json.dumps({'file': evolve.__file__, 'data': str(bundled_path('scifact')),"
        " 'config': str(shipped_path('configs', 'default.yaml')), 'default_ok': load_config() == PipelineConfig()}))"
    ))
    assert probe.returncode == 0, probe.stderr
    info = json.loads(probe.stdout.strip().splitlines()[-1])
    site = str(installed.resolve())
    assert info["file"].startswith(site), info  # not the editable checkout
    assert info["data"] == str(installed.resolve() / "evolve" / "_data" / "datasets" / "scifact")
    assert info["config"].startswith(site) and info["default_ok"]

    # vectors embedded by the checkout's CLI are valid for the installed wheel (same model identity): no embedding
    ws = tmp_path / "ws"
    shutil.copytree(cli_eval_workspace(tmp_path_factory)[0] / "cache", ws / "cache")
    proc = _outside(installed, cwd, "-m", "evolve", "eval", "--dataset", "scifact", "--subset", "200", "--json",
                    "--workspace", str(ws))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    from evolve.datasets import load_dataset

    sub = load_dataset("scifact").subset(200, "test")
    assert summary["dataset_fingerprint"] == sub.fingerprint
    assert summary["n_docs"] == 200 and summary["n_queries"] == len(sub.qrels["test"]) > 100  # whole queries kept
    assert set(summary["metrics"]) == {"ndcg@10", "recall@100", "mrr@10", "map@100"}
    assert 0.7 < summary["metrics"]["ndcg@10"] < 1.0
    assert summary["n_embedded"] == 0 and summary["cache_hit_rate"] == 1.0
    assert summary["provenance"]["git_commit"] == "unknown"
    assert not (cwd / ".evolve").exists()
