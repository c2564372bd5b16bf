"""Every look at a holdout counts: the append-only log of holdout evaluations and its correction rule.

Each ``evolve promote-config`` that scores a candidate on the holdout queries (promoted or refused, with or
without ``--dry-run``, forced or not) appends one JSON line to ``<workspace>/holdout_looks.jsonl`` (fsynced),
apart from ``history/`` (which ``rollback`` walks and which records only what changed the champion).

The rule is fixed: **Bonferroni over a declared budget of looks**. The first look at a holdout (identified by
its fingerprint) fixes the family: ``budget`` looks at family-wise level ``alpha``; each look is then tested at
``alpha / budget``, so the chance that any of the budget's looks promotes a candidate that is not better stays at
most ``alpha`` however the looks were chosen. A later look that asks for another budget or alpha is refused (it
would change the family after its members were seen). When the budget is spent, looks are refused until a fresh
holdout exists: a new study with another ``--split-seed``, or fresh gold queries.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass

from evolve._io import ensure_dir, fsync_dir
from evolve.errors import ConfigError, EvolveError, StorageError
from evolve.workspace import Workspace

__all__ = ["RULE", "DEFAULT_BUDGET", "LookBudget", "HoldoutLooks", "HoldoutBudgetSpent"]

RULE = "bonferroni"
DEFAULT_BUDGET = 10


class HoldoutBudgetSpent(EvolveError):
    """Every look of the holdout's declared budget has been used."""


@dataclass(frozen=True)
class LookBudget:
    """Where one holdout stands: its fixed budget and alpha, and how many looks were recorded before this one."""

    fingerprint: str
    budget: int
    alpha: float
    used: int

    @property
    def look(self) -> int:
        """The number of the look about to be taken (1-based)."""
        return self.used + 1

    @property
    def level(self) -> float:
        """The significance level of each look: ``alpha / budget``."""
        return self.alpha / self.budget

    @property
    def spent(self) -> bool:
        return self.used >= self.budget

    def rule_text(self) -> str:
        """``Bonferroni, look 3 of 10, alpha 0.05/10 = 0.005``."""
        return f"Bonferroni, look {self.look} of {self.budget}, alpha {self.alpha:g}/{self.budget} = {self.level:.3g}"


class HoldoutLooks:
    """The workspace's holdout-look log (``<workspace>/holdout_looks.jsonl``), one JSON object a line."""

    def __init__(self, workspace: Workspace):
        self.path = workspace.holdout_looks_path
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        text = self.path.read_text(encoding="utf-8")
        lines = text.split("\n")
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if lineno == len(lines):
                    continue  # a write cut by a crash (no newline yet): that look never printed its verdict
                raise StorageError(f"{self.path}:{lineno}: expected one JSON object a line, "
                                   f"got {line.strip()[:80]!r}") from None
            if not isinstance(rec, dict) or "holdout_fingerprint" not in rec:
                raise StorageError(f"{self.path}:{lineno}: expected a look record with 'holdout_fingerprint', "
                                   f"got {line.strip()[:80]!r}")
            out.append(rec)
        return out

    def looks_at(self, fingerprint: str) -> list[dict]:
        return [r for r in self.records() if r["holdout_fingerprint"] == fingerprint]

    def budget(self, fingerprint: str, *, budget: int | None, alpha: float | None) -> LookBudget:
        """The family of ``fingerprint``'s looks. The first look fixes ``budget`` (default :data:`DEFAULT_BUDGET`)
        and ``alpha`` (default 0.05); a later different value is a :class:`~evolve.errors.ConfigError`."""
        if budget is not None and budget < 1:
            raise ConfigError(f"--holdout-budget: expected at least 1 look, got {budget}")
        if alpha is not None and not 0 < alpha < 1:
            raise ConfigError(f"--max-p: expected a number in (0, 1), got {alpha}")
        earlier = self.looks_at(fingerprint)
        if not earlier:
            return LookBudget(fingerprint, budget or DEFAULT_BUDGET, 0.05 if alpha is None else alpha, 0)
        first = earlier[0]
        fixed_budget, fixed_alpha = int(first["budget"]), float(first["alpha"])
        short = fingerprint[:12]
        if budget is not None and budget != fixed_budget:
            raise ConfigError(f"--holdout-budget {budget}: the first look at this holdout ({short}, {first['time']}) "
                              f"fixed its budget at {fixed_budget} looks; expected {fixed_budget} or no "
                              "--holdout-budget (a fresh holdout may declare another)")
        if alpha is not None and alpha != fixed_alpha:
            raise ConfigError(f"--max-p {alpha:g}: the first look at this holdout ({short}, {first['time']}) fixed "
                              f"its family-wise alpha at {fixed_alpha:g}; expected {fixed_alpha:g} or no --max-p")
        return LookBudget(fingerprint, fixed_budget, fixed_alpha, len(earlier))

    def check_not_spent(self, state: LookBudget) -> None:
        if state.spent:
            raise HoldoutBudgetSpent(
                f"holdout budget spent: all {state.budget} looks at this holdout ({state.fingerprint[:12]}) are used "
                f"(Bonferroni, alpha {state.alpha:g}); expected a fresh holdout: a new study with another "
                "--split-seed, or fresh gold queries")

    def record(self, state: LookBudget, **fields) -> dict:
        """Append this look (fsynced before returning)."""
        rec = {
            "look": state.look,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "holdout_fingerprint": state.fingerprint,
            "rule": RULE,
            "budget": state.budget,
            "alpha": state.alpha,
            "level": state.level,
            **fields,
        }
        ensure_dir(self.path.parent)
        line = json.dumps(rec, ensure_ascii=False, sort_keys=False) + "\n"
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            data = os.pread(fd, os.fstat(fd).st_size, 0) if os.fstat(fd).st_size else b""
            if data and not data.endswith(b"\n"):  # a write cut by a crash: that look never finished, drop it
                os.ftruncate(fd, data.rfind(b"\n") + 1)
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.path.parent)  # the log's name too: a power cut must not take the file (and its looks) away
        return rec

    @contextlib.contextmanager
    def lock(self):
        """Hold the log for one look: count, evaluate, record (two promote-config runs cannot share a look)."""
        import fcntl

        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield self
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

