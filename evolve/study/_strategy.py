"""How a night proposes configurations, and when it stops: one code path for ``evolve run`` and for
``benchmarks/search_replay.py`` (issue 21).

* :func:`effective_key`: two configs that retrieve the same are one config (a sparse config repeated across the
  embedding-model axis, an unused fusion weight, an aggregation over whole documents). A trial whose effective
  config is already done is a *repeat*: answered from the recorded result, never counted against ``--trials``.
* :func:`stage_keys`: the expensive inputs a config needs (dense vectors per (model, chunking, prefix), BM25 per
  (chunking, tokenizer), rerank vectors per rerank model); a trial that needs no new one runs warm.
* :func:`space_lattice`, :func:`space_configs`: the space on a lattice (every choice; int/float ranges on a few
  points unless they have a step), its distinct effective configs, and :func:`space_size` (None when infinite).
* :class:`Budget`: counts trials (repeats free), stops a night when ``--trials`` is spent, when every distinct
  effective config is done, or after ``max_repeats`` repeats in a row.
* :func:`make_strategy`: the Optuna sampler of a strategy: ``tpe`` (the shipped sampler, the default), ``random``,
  ``grid`` (the lattice in axis order), ``greedy`` (AutoRAG-style: one axis at a time in the space's order,
  keeping the best value) and ``cost`` (cost-aware: a new expensive stage is paid only after the cheap axes were
  explored on the stages already paid; see :class:`CostAwarePlan`).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

from evolve.config import PipelineConfig, flatten
from evolve.errors import ConfigError
from evolve.search_space import SearchSpace

__all__ = [
    "STRATEGIES",
    "Budget",
    "Candidate",
    "effective_dict",
    "effective_key",
    "make_strategy",
    "space_configs",
    "space_lattice",
    "space_size",
    "stage_keys",
]

STRATEGIES = ("tpe", "random", "grid", "greedy", "cost")
#: a night stops after this many repeats in a row (the sampler keeps landing on done configs)
MAX_REPEATS = 25
#: at most this many lattice points are enumerated (a larger space is treated as infinite)
ENUMERATION_CAP = 100_000

# fields that change how a stage runs, never what it returns
_RUNTIME = {
    "embedding": (
        "batch_size",
        "device",
        "gpu_memory_utilization",
        "devices",
        "timeout",
        "max_retries",
        "max_concurrency",
        "api_key_env",
    ),
    "rerank": ("batch_size", "gpu_memory_utilization", "timeout", "max_retries", "api_key_env"),
    "index": ("use_gpu",),
}


def _drop(d: dict[str, Any], section: str, names=None) -> None:
    for k in [k for k in d if k.startswith(section + ".")]:
        if names is None or k.split(".", 1)[1] in names:
            del d[k]


def effective_dict(config: PipelineConfig) -> dict[str, Any]:
    """The flattened retrieval config without the fields this config never uses (see the module doc)."""
    d = flatten(config.retrieval_dict())
    _drop(d, "tracking")
    for section, names in _RUNTIME.items():
        _drop(d, section, names)
    mode = config.retrieval.mode
    if mode == "sparse":
        for section in ("embedding", "index", "fusion"):
            _drop(d, section)
    if mode == "dense":
        _drop(d, "sparse")
        _drop(d, "fusion")
    if mode == "hybrid":
        method = config.fusion.method
        unused = {"rrf": ("weight", "norm"), "wsum": ("rrf_k",), "mnz": ("rrf_k", "weight", "norm")}[method]
        if config.fusion.optimize:
            unused += {"rrf": ("rrf_k",), "wsum": ("weight",), "mnz": ()}[method]
        _drop(d, "fusion", unused)
    if mode != "sparse":
        kind = config.index.type
        _drop(
            d,
            "index",
            [
                n
                for n in ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nlist", "ivf_nprobe")
                if not n.startswith(kind)
            ],
        )
    if config.chunking.strategy == "none":  # one chunk per document: size, overlap and aggregation change nothing
        _drop(d, "chunking", ("size", "overlap"))
        d.pop("retrieval.aggregation", None)
    if config.rerank.transport == "none":
        _drop(d, "rerank", [k.split(".", 1)[1] for k in d if k.startswith("rerank.") and k != "rerank.transport"])
    elif config.rerank.combine == "replace":
        d.pop("rerank.weight", None)
    return d


def effective_key(config: PipelineConfig) -> str:
    """sha256 (16 hex) of :func:`effective_dict`: equal keys retrieve the same."""
    blob = json.dumps(effective_dict(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _chunking(config: PipelineConfig) -> str:
    c = config.chunking
    return "none" if c.strategy == "none" else f"{c.strategy}-{c.size}-{c.overlap}"


def stage_keys(config: PipelineConfig) -> tuple[str, ...]:
    """The expensive inputs ``config`` needs, each named once (what a replay's clock charges once):
    ``dense|model|chunking|prefix`` (Matryoshka dims derive from the full vectors), ``bm25|chunking|tokenizer``,
    ``rerank|transport:model:max_length`` (``|query prefix/doc prefix`` appended when either is set)."""
    out = []
    e = config.embedding
    if config.retrieval.mode in ("dense", "hybrid"):
        prefix = (
            f"{e.query_prefix}/{e.doc_prefix}/{e.input_type}"
            if (e.query_prefix or e.doc_prefix or e.input_type != "none")
            else "-"
        )
        out.append(f"dense|{e.backend}:{e.model}:{e.max_length}|{_chunking(config)}|{prefix}")
    if config.retrieval.mode in ("sparse", "hybrid"):
        out.append(f"bm25|{_chunking(config)}|{config.sparse.tokenizer}")
    r = config.rerank
    if r.transport != "none":
        prefix = f"|{r.query_prefix}/{r.doc_prefix}" if (r.query_prefix or r.doc_prefix) else ""
        out.append(f"rerank|{r.transport}:{r.model}:{r.max_length}{prefix}")
    return tuple(out)


# ----------------------------------------------------------------------------- the space on a lattice


def _range_points(low, high, *, step, log, points: int, integer: bool) -> list:
    if step:
        n = int(math.floor((high - low) / step + 1e-9)) + 1
        if n <= 64:
            vals = [low + i * step for i in range(n)]
            return [int(v) for v in vals] if integer else [round(v, 6) for v in vals]
    if integer and high - low + 1 <= points:
        return list(range(int(low), int(high) + 1))
    if log:
        vals = [math.exp(math.log(low) + i * (math.log(high) - math.log(low)) / (points - 1)) for i in range(points)]
    else:
        vals = [low + i * (high - low) / (points - 1) for i in range(points)]
    if integer:
        return sorted({int(round(v)) for v in vals})
    return [round(v, 4) for v in vals]


def space_lattice(space: SearchSpace, points: int = 3) -> dict[str, list]:
    """Per searched field, the values the lattice takes: every choice; a stepped range whole (up to 64 points);
    any other range ``points`` evenly spaced points (log-spaced for ``log``), ends included."""
    out = {}
    for name, spec in space.params.items():
        if spec.kind == "categorical":
            out[name] = list(spec.choices)
        else:
            low, high = spec.int_ or spec.float_
            out[name] = _range_points(
                low, high, step=spec.step, log=spec.log, points=max(2, points), integer=spec.kind == "int"
            )
    return out


def _finite(space: SearchSpace) -> bool:
    for spec in space.params.values():
        if spec.kind == "float" and not spec.step:
            return False
        if spec.step and (((spec.int_ or spec.float_)[1] - (spec.int_ or spec.float_)[0]) / spec.step) >= 64:
            return False
    return True


@dataclass(frozen=True)
class Candidate:
    """One distinct effective config of a lattice: the params that give it, its key and its stages."""

    params: dict
    key: str
    stages: tuple[str, ...]


def _walk(
    space: SearchSpace, lattice: dict[str, list], names: list[str], values: dict, params: dict, out: list, cap: int
) -> None:
    if len(out) > cap:
        raise OverflowError
    if not names:
        out.append(dict(params))
        return
    name, rest = names[0], names[1:]
    if not space.active(name, values):
        _walk(space, lattice, rest, {**values, name: object()}, params, out, cap)
        return
    for v in lattice[name]:
        _walk(space, lattice, rest, {**values, name: v}, {**params, name: v}, out, cap)


def space_configs(
    space: SearchSpace, lattice: dict[str, list] | None = None, *, cap: int = ENUMERATION_CAP
) -> list[Candidate] | None:
    """The distinct effective configs of the lattice (first params in axis order win; combinations the config
    refuses are left out), the first axis outermost; None when the lattice has more than ``cap`` points."""
    lattice = lattice or space_lattice(space)
    start = flatten(space.start_config().to_dict())
    raw: list[dict] = []
    try:
        _walk(space, lattice, list(space.params), dict(start), {}, raw, cap)
    except OverflowError:
        return None
    seen: set[str] = set()
    out = []
    for params in raw:
        try:
            config = space.config_for(params)
        except ConfigError:
            continue
        key = effective_key(config)
        if key not in seen:
            seen.add(key)
            out.append(Candidate(params, key, stage_keys(config)))
    return out


def space_size(space: SearchSpace) -> int | None:
    """How many distinct effective configs ``space`` holds; None when that is infinite (a float range without a
    step) or too many to enumerate."""
    if not _finite(space):
        return None
    found = space_configs(space, space_lattice(space))
    return None if found is None else len(found)


# ----------------------------------------------------------------------------- the budget


@dataclass
class Budget:
    """What a night has spent: trials that count (repeats never do), repeats, repeats in a row. ``n_trials`` None:
    no trial limit (a timeout or a study-wide total ends the night); ``size`` None: the space is infinite."""

    n_trials: int | None
    size: int | None = None
    max_repeats: int = MAX_REPEATS
    counted: int = 0
    repeats: int = 0
    in_a_row: int = 0
    stopped: str | None = field(default=None)

    def record(self, repeat: bool) -> None:
        if repeat:
            self.repeats += 1
            self.in_a_row += 1
        else:
            self.counted += 1
            self.in_a_row = 0

    def exhausted(self, done_distinct: int | None) -> str | None:
        """The one line that says why the space is spent, or None."""
        if self.size is not None and done_distinct is not None and done_distinct >= self.size:
            return (
                f"search space exhausted: all {self.size} distinct configs are done "
                f"({self.counted} trial(s) counted, {self.repeats} repeat(s) answered from earlier results)"
            )
        if self.in_a_row >= self.max_repeats:
            return (
                f"search space exhausted: the last {self.in_a_row} proposals repeated done configs "
                f"({self.counted} trial(s) counted; {done_distinct if done_distinct is not None else '?'} "
                "distinct configs done)"
            )
        return None

    def should_stop(self, done_distinct: int | None) -> bool:
        reason = self.exhausted(done_distinct)
        if reason is not None:
            self.stopped = reason
            return True
        return self.n_trials is not None and self.counted >= self.n_trials


# ----------------------------------------------------------------------------- strategies


def make_strategy(name: str, space: SearchSpace, seed: int | None, *, lattice_points: int = 3):
    """The Optuna sampler of strategy ``name`` (one of :data:`STRATEGIES`)."""
    import optuna

    if name == "tpe":
        from evolve.study._sampling import make_sampler

        return make_sampler(seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    plans = {"grid": GridPlan, "greedy": GreedyPlan, "cost": CostAwarePlan}
    if name not in plans:
        raise ConfigError(f"--strategy: expected one of {', '.join(STRATEGIES)}, got '{name}'")
    candidates = space_configs(space, space_lattice(space, lattice_points))
    if candidates is None:
        raise ConfigError(
            f"--strategy {name}: the search space has more than {ENUMERATION_CAP} lattice points; "
            "expected a smaller space (or --strategy tpe)"
        )
    return plan_sampler(plans[name](candidates), space, seed)


def plan_sampler(plan: _Plan, space: SearchSpace, seed: int | None):
    """An Optuna sampler that asks ``plan`` for a whole parameter set once per trial and answers each
    ``suggest_*`` from it; a param the plan does not name falls back to a seeded random sampler. Every trial that
    is not waiting counts as taken (with parallel workers, a running trial's config is not proposed again)."""
    import optuna

    class _Sampler(optuna.samplers.BaseSampler):
        def __init__(self, plan, space, seed):
            self.plan = plan
            self.space = space
            self.seed = seed
            self._plans: dict[int, dict] = {}
            self._keys: dict[str, str | None] = {}
            self._fallback = optuna.samplers.RandomSampler(seed=seed)

        def infer_relative_search_space(self, study, trial):
            return {}

        def sample_relative(self, study, trial, search_space):
            return {}

        def sample_independent(self, study, trial, param_name, param_distribution):
            plan = self._plan_for(study, trial)
            if plan is not None and param_name in plan:
                value = plan[param_name]
                try:
                    if param_distribution._contains(param_distribution.to_internal_repr(value)):
                        return value
                except (ValueError, TypeError):
                    pass
            return self._fallback.sample_independent(study, trial, param_name, param_distribution)

        def _key(self, params: dict) -> str | None:
            blob = json.dumps(params, sort_keys=True, default=str)
            if blob not in self._keys:
                try:
                    self._keys[blob] = effective_key(self.space.config_for(params))
                except ConfigError:
                    self._keys[blob] = None
            return self._keys[blob]

        def _plan_for(self, study, trial):
            if trial.number not in self._plans:
                from optuna.trial import TrialState

                done: dict[str, float] = {}
                order: list[str] = []
                taken: set[str] = set()
                for t in study.get_trials(deepcopy=False):
                    if t.number == trial.number or t.state == TrialState.WAITING:
                        continue
                    key = t.user_attrs.get("evolve.effective_key") or self._key(t.params)
                    if key is None:
                        continue
                    taken.add(key)
                    if t.state == TrialState.COMPLETE and t.values:
                        if key not in done:
                            order.append(key)
                        done[key] = max(done.get(key, -math.inf), t.values[0])
                rng = random.Random(f"{self.seed}:{trial.number}")
                self._plans[trial.number] = self.plan.next(done, order, taken, rng)
            return self._plans[trial.number]

    return _Sampler(plan, space, seed)


class _Plan:
    def __init__(self, candidates: list[Candidate]):
        self.candidates = candidates
        self.by_key = {c.key: c for c in candidates}

    def _untaken(self, taken: set[str]) -> list[Candidate]:
        return [c for c in self.candidates if c.key not in taken]

    def next(self, done: dict[str, float], order: list[str], taken: set[str], rng: random.Random) -> dict | None:
        raise NotImplementedError


class GridPlan(_Plan):
    """The lattice in the order the axes are listed (the first axis outermost), skipping what is taken."""

    def next(self, done, order, taken, rng):
        left = self._untaken(taken)
        return dict(left[0].params) if left else None


class GreedyPlan(_Plan):
    """AutoRAG-style greedy: from the lattice's first config, one axis at a time in the space's order (the
    pipeline's), every value of that axis with the others held at the best so far; keep the best, move on. After
    a pass, another pass from the new best until a pass finds nothing new; then random untaken configs."""

    def __init__(self, candidates):
        super().__init__(candidates)
        self.axes = list(dict.fromkeys(k for c in candidates for k in c.params))

    def _variant(self, base: dict, axis: str, value) -> Candidate | None:
        """The candidate closest to ``base`` with ``axis`` = ``value``: most fields equal to base's, in axis order."""
        best, score = None, -1
        for c in self.candidates:
            if c.params.get(axis) != value:
                continue
            s = sum(1 for k, v in base.items() if c.params.get(k) == v)
            if s > score:
                best, score = c, s
        return best

    def next(self, done, order, taken, rng):
        if not self.candidates:
            return None
        current = self.candidates[0]
        for _ in range(10):  # passes
            start_key = current.key
            for axis in self.axes:
                if axis not in current.params:
                    continue
                options = {v for c in self.candidates for v in [c.params.get(axis)] if axis in c.params}
                variants = []
                for value in sorted(options, key=lambda v: (str(type(v)), str(v))):
                    v = self._variant(current.params, axis, value)
                    if v is not None and v not in variants:
                        variants.append(v)
                if current not in variants:
                    variants.insert(0, current)
                pending = [v for v in variants if v.key not in taken]
                if pending:
                    return dict(pending[0].params)
                scored = [v for v in variants if v.key in done]
                if scored:
                    current = max(scored, key=lambda v: done[v.key])
            if current.key == start_key:
                break
        left = self._untaken(taken)
        return dict(rng.choice(left).params) if left else None


class CostAwarePlan(_Plan):
    """Expensive stages first, held while the cheap axes are explored on warm vectors.

    A config is *warm* when every stage it needs (:func:`stage_keys`) was paid by an earlier trial. After a trial
    pays a new stage, the next ``explore`` trials are warm configs that use that stage (the cheap axes on those
    vectors). Then the next trial pays the fewest new stages it can (a random config among those), until every
    stage is paid. From then on: random warm configs that share the best config's stages, three times in four;
    any untaken config otherwise."""

    explore = 4

    def next(self, done, order, taken, rng):
        left = self._untaken(taken)
        if not left:
            return None
        paid: set[str] = set()
        last_new: list[str] = []
        since_new = 0
        for key in order:
            stages = self.by_key[key].stages if key in self.by_key else ()
            new = [s for s in stages if s not in paid]
            paid.update(stages)
            if new:
                last_new, since_new = new, 0
            else:
                since_new += 1
        warm = [c for c in left if set(c.stages) <= paid]
        if last_new and since_new < self.explore:
            near = [c for c in warm if set(last_new) <= set(c.stages)]
            if near:
                return dict(rng.choice(near).params)
        cold = [c for c in left if not set(c.stages) <= paid]
        if cold:
            fewest = min(len(set(c.stages) - paid) for c in cold)
            return dict(rng.choice([c for c in cold if len(set(c.stages) - paid) == fewest]).params)
        if done and rng.random() < 0.75:
            best = self.by_key.get(max(done, key=done.get))
            if best is not None:
                near = [c for c in left if set(c.stages) == set(best.stages)]
                if near:
                    return dict(rng.choice(near).params)
        return dict(rng.choice(left).params)
