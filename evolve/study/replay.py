"""Replaying a night from a table (issue 21): search strategies compared by the thousand, as HPOBench and YAHPO
Gym compare optimizers.

A *table* (``benchmarks/search_table.py`` builds one) holds, per distinct effective config of a search space's
lattice, its tune, judge (benchmark-only holdout) and report scores, the stages it needs and the seconds of its
warm trial; and per stage (:func:`evolve.study._strategy.stage_keys`) the seconds and texts it cost, measured
once. :func:`replay` runs a strategy's real sampler (:func:`evolve.study._strategy.make_strategy`, the one
``evolve run --strategy`` uses) against the table through the real :meth:`SearchSpace.sample` and the real
:class:`~evolve.study._strategy.Budget`: a proposal is snapped to the nearest lattice point (continuous params
sit on the table's lattice), a repeat of a done config is free, and the clock (:class:`Clock`) charges a stage
the first time any trial of this replay needs it, plus the warm trial every time.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from evolve.errors import ConfigError
from evolve.search_space import SearchSpace
from evolve.study._strategy import Budget, effective_key, make_strategy

__all__ = [
    "Clock",
    "Row",
    "Table",
    "Trace",
    "replay",
    "snap",
]


@dataclass(frozen=True)
class Row:
    """One config of a table."""

    key: str
    params: dict
    stages: tuple[str, ...]
    warm_seconds: float
    tune: float
    judge: float
    report: float


@dataclass
class Table:
    """The configs of a table by effective key, the stage costs (seconds, texts embedded) and its metadata."""

    rows: dict[str, Row]
    stage_seconds: dict[str, float]
    stage_texts: dict[str, int] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def best(self) -> Row:
        return max(self.rows.values(), key=lambda r: r.tune)

    def all_stage_seconds(self) -> float:
        return sum(self.stage_seconds.values())

    def oracle_seconds(self, tolerance: float) -> float:
        """The least time any night can take to reach within ``tolerance`` of the best tune score: the cheapest
        config there, charged its stages and its warm trial (a strategy that knew the table would go straight
        to it)."""
        target = self.best.tune - tolerance
        return min(
            sum(self.stage_seconds[s] for s in r.stages) + r.warm_seconds for r in self.rows.values() if r.tune >= target
        )

    def reweighted(self, rates: dict[str, float]) -> Table:
        """This table with the stages that embed with a model of ``rates`` (model name -> texts per second, a
        throughput measured elsewhere, e.g. on a GPU) costing ``texts / rate`` seconds; every other stage (BM25)
        and every warm trial keep their measured seconds. ``meta["stage_rates"]`` records the rates."""
        models = {_stage_model(s) for s in self.stage_seconds} - {None}
        unknown = sorted(set(rates) - models)
        if unknown:
            raise ConfigError(
                f"stage rate: expected a model of this table's stages ({', '.join(sorted(models)) or 'none'}), "
                f"got '{unknown[0]}'"
            )
        bad = sorted(m for m, r in rates.items() if not (r > 0 and math.isfinite(r)))
        if bad:
            raise ConfigError(f"stage rate of '{bad[0]}': expected texts per second > 0, got {rates[bad[0]]}")
        seconds = dict(self.stage_seconds)
        for s in seconds:
            model = _stage_model(s)
            if model in rates:
                if s not in self.stage_texts:
                    raise ConfigError(f"stage '{s}': expected its texts in the table to re-weight it, got none")
                seconds[s] = self.stage_texts[s] / rates[model]
        return Table(self.rows, seconds, dict(self.stage_texts), {**self.meta, "stage_rates": dict(rates)})

    def write(self, folder: Path) -> None:
        """``configs.csv``, ``stages.csv`` and ``meta.json`` under ``folder`` (atomic writes)."""
        import io

        from evolve._io import atomic_write_json, atomic_write_text

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["key", "params", "stages", "warm_seconds", "tune", "judge", "report"])
        for r in self.rows.values():
            w.writerow(
                [
                    r.key,
                    json.dumps(r.params, sort_keys=True),
                    ";".join(r.stages),
                    f"{r.warm_seconds:.4f}",
                    f"{r.tune:.6f}",
                    f"{r.judge:.6f}",
                    f"{r.report:.6f}",
                ]
            )
        atomic_write_text(folder / "configs.csv", buf.getvalue())
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["stage", "seconds", "texts"])
        for s, sec in self.stage_seconds.items():
            w.writerow([s, f"{sec:.4f}", self.stage_texts.get(s, 0)])
        atomic_write_text(folder / "stages.csv", buf.getvalue())
        atomic_write_json(folder / "meta.json", self.meta)

    @classmethod
    def read(cls, folder: Path) -> Table:
        folder = Path(folder)
        rows = {}
        with open(folder / "configs.csv", newline="", encoding="utf-8") as f:
            for line, r in enumerate(csv.DictReader(f), start=2):
                try:
                    rows[r["key"]] = Row(
                        r["key"],
                        json.loads(r["params"]),
                        tuple(s for s in r["stages"].split(";") if s),
                        float(r["warm_seconds"]),
                        float(r["tune"]),
                        float(r["judge"]),
                        float(r["report"]),
                    )
                except (KeyError, ValueError) as err:
                    raise ConfigError(
                        f"expected key, params, stages, warm_seconds, tune, judge, report; got {err}",
                        path=f"{folder / 'configs.csv'}:{line}",
                    ) from None
        seconds, texts = {}, {}
        with open(folder / "stages.csv", newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                seconds[r["stage"]] = float(r["seconds"])
                texts[r["stage"]] = int(r["texts"])
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        return cls(rows, seconds, texts, meta)


def _stage_model(stage: str) -> str | None:
    """The model a stage embeds with (``dense|backend:model:max_length|…``, ``rerank|transport:model:max_length…``);
    None for BM25."""
    kind, _, rest = stage.partition("|")
    if kind not in ("dense", "rerank"):
        return None
    parts = rest.split("|", 1)[0].split(":")
    return ":".join(parts[1:-1]) if len(parts) >= 3 else None


class Clock:
    """Seconds a replayed night has spent: a stage is charged the first time a trial needs it, the warm trial
    every time."""

    def __init__(self, stage_seconds: dict[str, float]):
        self.stage_seconds = stage_seconds
        self.paid: set[str] = set()
        self.seconds = 0.0

    def charge(self, row: Row) -> float:
        cost = row.warm_seconds + sum(self.stage_seconds[s] for s in row.stages if s not in self.paid)
        self.paid.update(row.stages)
        self.seconds += cost
        return cost


def snap(params: dict, lattice: dict[str, list]) -> dict:
    """Each value moved to the nearest lattice point of its field (numbers by distance; others as they are)."""
    out = {}
    for name, value in params.items():
        points = lattice.get(name)
        if points and isinstance(value, (int, float)) and not isinstance(value, bool) and value not in points:
            numeric = [p for p in points if isinstance(p, (int, float)) and not isinstance(p, bool)]
            if numeric:
                value = min(numeric, key=lambda p: (abs(p - value), p))
        out[name] = value
    return out


@dataclass
class Trace:
    """One replayed night: per counted trial, the clock and the incumbent (best tune so far) with its scores."""

    strategy: str
    seed: int
    seconds: list[float] = field(default_factory=list)
    best_tune: list[float] = field(default_factory=list)
    best_judge: list[float] = field(default_factory=list)
    best_report: list[float] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    repeats: int = 0
    snapped: int = 0
    invalid: int = 0
    stopped: str | None = None

    def time_to(self, target: float) -> float:
        """Seconds until the incumbent's tune score reached ``target`` (inf: never)."""
        for s, v in zip(self.seconds, self.best_tune):
            if v >= target:
                return s
        return math.inf

    def at(self, seconds: float) -> tuple[float, float, float]:
        """The incumbent (tune, judge, report) at ``seconds`` on the clock (nan before the first trial)."""
        i = -1
        for j, s in enumerate(self.seconds):
            if s <= seconds:
                i = j
        if i < 0:
            return (math.nan, math.nan, math.nan)
        return (self.best_tune[i], self.best_judge[i], self.best_report[i])


def replay(
    table: Table,
    space: SearchSpace,
    strategy: str,
    seed: int,
    *,
    max_trials: int | None = None,
    max_seconds: float | None = None,
    lattice: dict[str, list] | None = None,
) -> Trace:
    """One night of ``strategy`` (seeded) on ``table``: ask, sample through the space, snap, answer from the
    table, tell. Stops at ``max_trials`` counted trials, at ``max_seconds`` on the clock, or when the
    :class:`Budget` finds the table exhausted (every config done, or too many repeats in a row)."""
    import optuna

    from evolve.study._strategy import space_lattice

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    points = int(table.meta.get("lattice_points", 3))
    lattice = lattice or table.meta.get("lattice") or space_lattice(space, points)
    study = optuna.create_study(
        direction="maximize", sampler=make_strategy(strategy, space, seed, lattice_points=points)
    )
    budget = Budget(max_trials, size=len(table.rows))
    clock = Clock(table.stage_seconds)
    trace = Trace(strategy, seed)
    done: dict[str, float] = {}
    best: Row | None = None
    while True:
        trial = study.ask()
        params = space.sample(trial)
        fixed = snap(params, lattice)
        trace.snapped += fixed != params
        try:
            key = effective_key(space.config_for(fixed))
        except ConfigError:
            key = None
        row = table.rows.get(key) if key else None
        if row is None:  # a combination the config refuses, or off the table: a failed trial, no cost
            trace.invalid += 1
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            budget.record(False)
        elif key in done:
            trial.set_user_attr("evolve.effective_key", key)
            trial.set_user_attr("evolve.repeat_of", -1)
            study.tell(trial, done[key])
            trace.repeats += 1
            budget.record(True)
        else:
            trial.set_user_attr("evolve.effective_key", key)
            clock.charge(row)
            done[key] = row.tune
            study.tell(trial, row.tune)
            budget.record(False)
            if best is None or row.tune > best.tune:
                best = row
            trace.seconds.append(clock.seconds)
            trace.best_tune.append(best.tune)
            trace.best_judge.append(best.judge)
            trace.best_report.append(best.report)
            trace.keys.append(key)
        if budget.should_stop(len(done)):
            trace.stopped = budget.stopped
            break
        if max_seconds is not None and clock.seconds >= max_seconds:
            break
        if budget.counted + budget.repeats > 20 * len(table.rows) + 100:  # a safety net; Budget stops far earlier
            break
    return trace
