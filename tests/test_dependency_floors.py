"""The dependency floors in pyproject.toml are what the code calls (issue 19, defect 13): ``scipy>=1.11`` let an
install get scipy 1.11-1.14, where ``permutation_test(..., rng=...)`` (evolve/evaluate.py) raises TypeError and
``promote-config`` cannot decide anything."""

from __future__ import annotations

import ast
import inspect
import re
import tomllib

from conftest import REPO
from packaging.version import Version

# (module, call, keyword or attribute the code uses, the first release that has it, where that is written down)
NEEDS = {
    "scipy": [
        (
            "evolve/evaluate.py",
            "permutation_test",
            "rng",
            "1.15",
            "SciPy 1.15.0 release notes: the `rng` keyword (SPEC 7) replaced `random_state` in scipy.stats resampling",
        ),
        (
            "evolve/testing/serving.py",
            "kendalltau",
            ".statistic",
            "1.10",
            "SciPy 1.10.0: hypothesis tests return SignificanceResult with `.statistic`",
        ),
    ],
}


def _floor(package: str) -> Version:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    spec = next(d for d in deps if re.match(rf"{package}\b", d))
    m = re.search(r">=\s*([0-9][0-9.]*)", spec)
    assert m, f"pyproject.toml: expected a >= floor for {package}, got {spec!r}"
    return Version(m.group(1))


def _calls_with(path: str, func: str, keyword: str) -> bool:
    """Does ``path`` call ``func`` with ``keyword`` (``.attr``: read that attribute of the call's result)?"""
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        call = node.value if keyword.startswith(".") and isinstance(node, ast.Attribute) else node
        if not isinstance(call, ast.Call):
            continue
        name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
        if name != func:
            continue
        if keyword.startswith("."):
            if node.attr == keyword[1:]:
                return True
        elif any(k.arg == keyword for k in call.keywords):
            return True
    return False


def test_the_scipy_floor_is_at_least_what_the_code_calls():
    floor = _floor("scipy")
    for path, func, keyword, since, source in NEEDS["scipy"]:
        assert _calls_with(path, func, keyword), f"{path} no longer uses {func} {keyword}: revisit the floor"
        assert floor >= Version(since), f"scipy>={floor}, but {path} uses {func} {keyword}, new in {since} ({source})"


def test_the_installed_scipy_has_what_the_code_calls():
    """The fact behind the floor, on the installed version (which pyproject's floor must admit)."""
    import scipy
    from scipy.stats import permutation_test

    assert "rng" in inspect.signature(permutation_test).parameters
    assert Version(scipy.__version__) >= _floor("scipy")
