"""Layering, as the code's own imports show it (issue 19, "Also"): every import in a module, at the top or inside a
function, read with ``ast``. A lower layer never imports a higher one back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "evolve"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = path.relative_to(REPO).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def _modules(folder: Path):
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _offenders(files, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    bad = {}
    for path in files:
        hits = sorted(m for m in _imports(path) if m.startswith(forbidden))
        if hits:
            bad[str(path.relative_to(REPO))] = hits
    return bad


@pytest.mark.parametrize("lower, higher", [
    ("cache", ("evolve.index", "evolve.sparse")),  # derived-file versions live in evolve._formats, below both
    ("feedback", ("evolve.cache",)),  # PostgreSQL URLs live in evolve._pgurl, shared by storage, cache, feedback
    ("gold", ("evolve.study",)),  # the study imports gold; what trials recorded is read through evolve.trials
])
def test_a_lower_package_never_imports_a_higher_one(lower, higher):
    assert not _offenders(_modules(PKG / lower), higher)


def test_the_fusion_stage_never_scores():
    """``fusion.optimize`` scores runs against judgements: the loop's job (evolve.study.optimize_fusion)."""
    assert not _offenders([PKG / "fusion.py"], ("evolve.evaluate", "evolve.study", "ranx.optimize_fusion"))


def test_benchmarks_never_import_from_tests():
    """What benchmarks and tests share lives in the package (evolve.testing), not in tests/."""
    test_modules = tuple(p.stem for p in (REPO / "tests").glob("*.py"))
    bad = _offenders(_modules(REPO / "benchmarks"), test_modules)
    for path in _modules(REPO / "benchmarks"):
        if '"tests"' in path.read_text(encoding="utf-8"):
            bad.setdefault(str(path.relative_to(REPO)), []).append("tests/ on sys.path")
    assert not bad


def test_the_library_never_imports_its_test_harnesses():
    library = [p for p in _modules(PKG) if "testing" not in p.relative_to(PKG).parts]
    assert not _offenders(library, ("evolve.testing",))


def test_what_trials_recorded_is_read_below_the_loop():
    """``evolve.trials`` (the config of trial N, comparable trials) is what serve, promote and gold read instead of
    study internals: it imports nothing that imports the study, gold, serve or the CLI back."""
    assert not _offenders([PKG / "trials.py"], ("evolve.study", "evolve.gold", "evolve.serve", "evolve.cli"))
    readers = [PKG / "serve" / "_sources.py", PKG / "cli" / "promote.py"]
    assert not [str(p) for p in readers if "repeat_of" in p.read_text(encoding="utf-8")]
    assert "user_attrs.get(\"evolve.config\")" not in (PKG / "gold" / "_power.py").read_text(encoding="utf-8")
