"""Every look counts: the append-only log of holdout evaluations and the rule that sets each look's level.

Each ``evolve promote-config`` that scores a candidate on the holdout queries (promoted or refused, with or
without ``--dry-run``, forced or not) appends one JSON line to ``<workspace>/holdout_looks.jsonl`` (fsynced),
apart from ``history/`` (which ``rollback`` walks and which records only what changed the champion).

**The rule: alpha-spending over the workspace's whole sequence of looks, with the online fallback procedure**
(Tian & Ramdas 2021, "Online control of the familywise error rate", Stat Methods Med Res 30(4); the online form
of Wiens' 2003 fallback procedure). Look ``j`` (counted over every look in the log, whatever the holdout's
fingerprint: new gold queries and another ``--split-seed`` never start a new count) is tested at

    level_j = alpha * gamma_j + (level_{j-1} if look j-1 rejected its null else 0)
    gamma_j = (H + 1) / ((j + H) * (j + H + 1))          (sum over j >= 1 is exactly 1)

with ``H`` = :data:`HORIZON`. The chance that *any* look ever promotes a candidate that is not better (the
family-wise error over the unbounded sequence) is at most ``alpha``, under arbitrary dependence between the
looks' p-values (reused holdout queries make them dependent): the proof is a union bound, it needs only that
each look's p-value is valid for the hypothesis that look tests. A look whose test rejected hands its level on
to the next look, so a true promotion costs the sequence nothing. :func:`advance` is the rule; promote-config
(through :meth:`HoldoutLooks.budget`) and ``benchmarks/gate_nights.py`` both call it. Looks written by the
earlier per-fingerprint Bonferroni rule count as spent: they take the first places of the sequence and hand
nothing on.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass

from evolve._io import ensure_dir, fsync_dir
from evolve.errors import ConfigError, StorageError
from evolve.workspace import Workspace

__all__ = ["RULE", "HORIZON", "DEFAULT_ALPHA", "LookBudget", "HoldoutLooks", "advance", "first_look", "gamma",
           "permutations_for", "replay"]

RULE = "fallback-spending"
#: the spending sequence's horizon H: gamma_1 = 1/(H+2), and half of alpha is spent by look H+1 (chosen by
#: benchmarks/gate_nights.py, see docs/promotion.md)
HORIZON = 100
DEFAULT_ALPHA = 0.05
#: the fewest permutations promote-config runs by default
MIN_PERMUTATIONS = 10000


def gamma(j: int, horizon: int = HORIZON) -> float:
    """The share of alpha look ``j`` (1-based) spends: ``(H+1) / ((j+H)(j+H+1))``; they sum to 1 over j >= 1."""
    return (horizon + 1) / ((j + horizon) * (j + horizon + 1))


@dataclass(frozen=True)
class LookBudget:
    """The look about to be taken: its place in the workspace's sequence and the level it is tested at."""

    fingerprint: str
    alpha: float
    #: the number of the look about to be taken (1-based, over the workspace's whole log)
    look: int
    #: the level handed on by the previous look, when its test rejected (0 otherwise)
    carried: float = 0.0
    horizon: int = HORIZON

    @property
    def used(self) -> int:
        return self.look - 1

    @property
    def level(self) -> float:
        """``alpha * gamma_look + carried``."""
        return self.alpha * gamma(self.look, self.horizon) + self.carried

    def passes(self, p_value: float) -> bool:
        """The decision: the candidate is significantly better when ``p <= level``."""
        return p_value <= self.level

    def rule_text(self) -> str:
        """``alpha-spending with online fallback, look 3, level 0.05 x 0.00943 = 0.000471``."""
        carried = f" + {self.carried:.3g} handed on by look {self.look - 1}" if self.carried else ""
        return (f"alpha-spending with online fallback (Tian & Ramdas 2021), look {self.look}, level "
                f"{self.alpha:g} x {gamma(self.look, self.horizon):.3g}{carried} = {self.level:.3g}")

    def as_dict(self) -> dict:
        return {"rule": RULE, "look": self.look, "alpha": self.alpha, "horizon": self.horizon,
                "gamma": gamma(self.look, self.horizon), "carried": self.carried, "level": self.level}


def first_look(alpha: float = DEFAULT_ALPHA, fingerprint: str = "", horizon: int = HORIZON) -> LookBudget:
    return LookBudget(fingerprint, alpha, 1, 0.0, horizon)


def advance(state: LookBudget, rejected: bool, fingerprint: str | None = None) -> LookBudget:
    """The rule: the next look after ``state``'s. It spends ``alpha * gamma_{j+1}``, plus ``state``'s whole level
    when ``state``'s test rejected (``p <= level``; promoted or not: a dry run's rejection counts too)."""
    return LookBudget(state.fingerprint if fingerprint is None else fingerprint, state.alpha, state.look + 1,
                      state.level if rejected else 0.0, state.horizon)


def _rule_fields_ok(rec: dict) -> bool:
    """A look under this rule carries the alpha and the horizon the workspace's sequence is fixed by."""
    alpha, horizon = rec.get("alpha"), rec.get("horizon")
    return (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and 0 < alpha < 1
            and isinstance(horizon, int) and not isinstance(horizon, bool) and horizon >= 0)


def _p_value(rec: dict) -> float | None:
    """A recorded look's p under this rule; None for the old Bonferroni rule's looks (and records without p),
    which hand nothing on."""
    if rec.get("rule") != RULE:
        return None
    try:
        return float(rec["p_value"])
    except (KeyError, TypeError, ValueError):
        return None


def replay(records: list[dict], alpha: float, fingerprint: str = "", horizon: int = HORIZON) -> LookBudget:
    """The look after ``records`` (the log, oldest first): :func:`advance` folded over it, each recorded look
    rejecting when its p is at most the level the rule gives it."""
    state = first_look(alpha, fingerprint, horizon)
    for rec in records:
        p = _p_value(rec)
        state = advance(state, p is not None and state.passes(p))
    return state


def permutations_for(level: float) -> int:
    """Default permutations for a look at ``level``: at least :data:`MIN_PERMUTATIONS`, and enough that
    ``p = (b+1)/(n+1)`` can pass with ``b`` up to 4 (``n >= 5/level``), rounded up to a thousand."""
    return max(MIN_PERMUTATIONS, 1000 * math.ceil(5.0 / level / 1000))


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
            if rec.get("rule") == RULE and not _rule_fields_ok(rec):
                raise StorageError(f"{self.path}:{lineno}: expected a {RULE} look with 'alpha' in (0, 1) and an "
                                   f"integer 'horizon' >= 0, got {line.strip()[:80]!r}")
            out.append(rec)
        return out

    def looks_at(self, fingerprint: str) -> list[dict]:
        return [r for r in self.records() if r["holdout_fingerprint"] == fingerprint]

    def budget(self, fingerprint: str, *, budget: int | None = None, alpha: float | None = None) -> LookBudget:
        """The next look of the workspace's sequence (every look in the log counts, whatever its holdout).
        ``alpha`` (``--max-p``) is fixed by the first look under this rule; ``budget`` (``--holdout-budget``)
        belongs to the old rule and is refused: a :class:`~evolve.errors.ConfigError` each."""
        if budget is not None:
            raise ConfigError(f"--holdout-budget {budget}: expected no --holdout-budget: the look rule is now "
                              "alpha-spending over every look of the workspace, with no budget to declare "
                              "(docs/promotion.md)")
        if alpha is not None and not 0 < alpha < 1:
            raise ConfigError(f"--max-p: expected a number in (0, 1), got {alpha}")
        records = self.records()
        mine = [r for r in records if r.get("rule") == RULE]
        if not mine:
            return replay(records, DEFAULT_ALPHA if alpha is None else alpha, fingerprint)
        # the first look under this rule fixed alpha and the spending sequence (its horizon): a later evolve with
        # another HORIZON continues the workspace's sequence, never a new one
        fixed, horizon = float(mine[0]["alpha"]), int(mine[0]["horizon"])
        if alpha is not None and alpha != fixed:
            raise ConfigError(f"--max-p {alpha:g}: the first look under this rule ({mine[0].get('time', '?')}) "
                              f"fixed the workspace's family-wise alpha at {fixed:g}; expected {fixed:g} or no --max-p")
        return replay(records, fixed, fingerprint, horizon)

    def check_permutations(self, state: LookBudget, n_permutations: int) -> None:
        """Refuse, before the look is taken, ``n`` permutations that cannot reach the look's level at all."""
        if 1.0 / (n_permutations + 1) > state.level:
            least = max(1, math.ceil(1.0 / state.level) - 1)
            least += 1.0 / (least + 1) > state.level
            raise ConfigError(f"--permutations {n_permutations}: expected at least {least} "
                              f"(the smallest p of {n_permutations} permutations, 1/{n_permutations + 1}, is above "
                              f"look {state.look}'s level {state.level:.3g}, so nothing could be promoted)")

    def record(self, state: LookBudget, **fields) -> dict:
        """Append this look (fsynced before returning); ``rejected`` is set from ``p_value`` when given."""
        rec = {"look": state.look, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "holdout_fingerprint": state.fingerprint, **state.as_dict(), **fields}
        if "p_value" in fields:
            rec["rejected"] = state.passes(float(fields["p_value"]))
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

