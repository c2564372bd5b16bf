"""One check of a node, and what it reports."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Status", "CheckResult", "Check"]


class Status(str, enum.Enum):
    """ok: ready; warn: works, but not as it should; fail: the night would fail (exit 1); skip: not relevant here
    (no GPU, a backend this night does not use), with the reason."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass
class CheckResult:
    """What one check found. ``found`` and ``expected`` are short phrases; :attr:`summary` joins them into the one
    line people read; ``fix`` says what to change (empty when there is nothing to do); ``details`` carries the
    numbers monitoring may want (JSON types only)."""

    check: str
    status: Status
    found: str
    expected: str = ""
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def summary(self) -> str:
        line = f"{self.found}; expected {self.expected}" if self.expected else self.found
        return " ".join(line.split())

    def to_record(self) -> dict[str, Any]:
        """The JSON record (``evolve/doctor/schema.json``)."""
        return {
            "check": self.check,
            "status": self.status.value,
            "summary": self.summary,
            "found": self.found,
            "expected": self.expected,
            "fix": self.fix,
            "seconds": round(float(self.seconds), 3),
            "details": self.details,
        }


class Check:
    """One concern of a node: a GPU fact, an endpoint, a store.

    Contract:

    * ``name`` is a stable dotted id (``gpu.memory``, ``endpoint.embedding``): monitoring keys on it.
    * :meth:`run` looks, and returns one :class:`CheckResult` (or a list, one per GPU or endpoint) built with
      :meth:`ok`, :meth:`warn`, :meth:`fail` or :meth:`skip`. It never prints and changes nothing a night relies
      on (a write test writes only its own probe and removes it). A condition it can detect is a result, not an
      exception; an :class:`~evolve.errors.EvolveError` that escapes becomes a ``fail`` with its one line, any
      other exception a ``fail`` that says the check itself broke.
    * Heavy imports (torch, vllm, optuna, mlflow) happen inside :meth:`run`, and only in the checks that need them.
    * ``deep`` checks run only with ``--deep`` (they start engines).
    """

    name: str = ""
    deep: bool = False

    def run(self, ctx) -> CheckResult | list[CheckResult]:
        raise NotImplementedError

    def ok(self, found: str, expected: str = "", **details) -> CheckResult:
        return CheckResult(self.name, Status.OK, found, expected, "", details)

    def warn(self, found: str, expected: str, fix: str, **details) -> CheckResult:
        return CheckResult(self.name, Status.WARN, found, expected, fix, details)

    def fail(self, found: str, expected: str, fix: str, **details) -> CheckResult:
        return CheckResult(self.name, Status.FAIL, found, expected, fix, details)

    def skip(self, reason: str, **details) -> CheckResult:
        return CheckResult(self.name, Status.SKIP, reason, "", "", details)
