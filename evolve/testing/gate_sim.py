"""Nights of ``promote-config`` in a synthetic world: does the look rule keep its promise across nights?

A stand-in for real pipelines: per-query scores are synthetic (config ``c`` scores ``theta_c + u_cq`` on query
``q``, ``u_cq ~ N(0, sd)`` drawn once per config and query, so a query scores the same every time it is reused).
What is real is the decision: every look goes through the shipped rule (:func:`evolve.looks.advance`,
:meth:`evolve.looks.LookBudget.passes`, which ``promote-config`` calls through :meth:`HoldoutLooks.budget` and
``Verdict.significant``) and, where the outcome is in doubt, the shipped test
(:func:`evolve.evaluate.paired_permutation_test`, at the permutations promote-config would run).

Each night: the holdout grows by ``holdout_growth`` new queries and keeps every old one (gold grows, queries are
reused); ``trials`` configs are tried and the best on *tune* queries is tested against the champion on the
holdout (scenario a). With ``operator``, when that look does not promote, the operator re-tests the earlier
candidate whose last holdout delta was the highest (if positive), on the grown holdout (scenario b): a choice made
after seeing holdout results. With ``effect`` > 0, one trial every ``every`` nights is truly better than the
champion by ``effect``; otherwise no candidate is ever better (the null world).

The permutation test costs seconds on large holdouts, so a look runs it only when the normal approximation of the
sign-flip test's p (``z = sum d / sqrt(sum d^2)``) lies within a factor ``screen`` of the look's level; outside
that window the normal p decides (``tests/test_gate_rule.py`` checks that the two agree there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from evolve.evaluate import paired_permutation_test
from evolve.looks import LookBudget, advance, first_look, permutations_for

__all__ = ["World", "Outcome", "NewRule", "TodayRule", "run_replay", "sign_flip_normal_p"]


@dataclass(frozen=True)
class World:
    nights: int = 100
    trials: int = 8
    holdout0: int = 100
    holdout_growth: int = 4
    tune0: int = 240
    tune_growth: int = 10
    #: per-query score spread of one config; paired differences then have sd * sqrt(2) = 0.088, SciFact's
    #: measured paired sd (README, `evolve gold assess`)
    sd: float = 0.0625
    effect: float = 0.0
    every: int = 10
    operator: bool = False
    alpha: float = 0.05
    screen: float = 3.0
    #: also run the permutation test on every n-th look outside the screen's window, and count disagreements (0: never)
    check_every: int = 0
    #: permutations of a look's test; None: what promote-config runs by default at the look's level
    permutations: int | None = None
    #: keep this many earlier candidates for the operator to re-test
    pool: int = 10
    #: the permutation test's seed: promote-config passes the study's split seed, the same at every look
    seed: int = 0


@dataclass
class Outcome:
    false_promotions: int = 0
    first_false_night: int | None = None
    good: int = 0
    good_promoted: int = 0
    looks: int = 0
    permutation_tests: int = 0
    screen_checked: int = 0
    screen_disagreed: int = 0
    levels: list = field(default_factory=list)
    replay: int = 0


class NewRule:
    """The shipped rule (evolve.looks): alpha-spending over every look, with online fallback."""

    name = "alpha-spending + online fallback (shipped)"

    def __init__(self, alpha: float, horizon: int | None = None):
        self.state: LookBudget = first_look(alpha) if horizon is None else first_look(alpha, horizon=horizon)

    def level(self, night: int) -> float:
        return self.state.level

    def permutations(self, world: World) -> int:
        return world.permutations or permutations_for(self.state.level)

    def decide(self, p: float) -> bool:
        ok = self.state.passes(p)
        self.state = advance(self.state, ok)
        return ok


class TodayRule:
    """main's rule before issue 19 (its HoldoutLooks.budget, restated here because it is gone from the package): a
    fresh budget of 10 looks at alpha/10 for every new holdout fingerprint. The holdout gains queries every night,
    so every night has a fresh fingerprint."""

    name = "today's Bonferroni per holdout fingerprint"

    def __init__(self, alpha: float, budget: int = 10):
        self.alpha, self.budget, self.night, self.used = alpha, budget, None, 0

    def level(self, night: int) -> float:
        if night != self.night:
            self.night, self.used = night, 0
        return self.alpha / self.budget if self.used < self.budget else 0.0

    def permutations(self, world: World) -> int:
        return world.permutations or 10000

    def decide(self, p: float) -> bool:
        level = self.alpha / self.budget if self.used < self.budget else 0.0
        self.used += 1
        return p <= level


def sign_flip_normal_p(d: np.ndarray) -> float:
    """The normal approximation of the one-sided sign-flip test's p: the flipped sum has mean 0, variance sum d^2."""
    s2 = float((d * d).sum())
    if s2 == 0.0:
        return 1.0
    return 0.5 * math.erfc(float(d.sum()) / math.sqrt(s2) / math.sqrt(2.0))


def _sample_key(out: Outcome) -> int:
    """Which looks the screen check samples: spread over replays (a replay has at most a few hundred looks)."""
    return out.looks * 7919 + out.replay * 104729


def _look(world: World, rule, night: int, d: np.ndarray, seed: int, out: Outcome) -> bool:
    """One look: the level from the rule, p (the shipped test when in doubt), the rule's decision."""
    level = rule.level(night)
    out.looks += 1
    out.levels.append(level)
    p = sign_flip_normal_p(d)
    inside = level > 0 and level / world.screen <= p <= level * world.screen
    if inside or (level > 0 and world.check_every and (_sample_key(out) % world.check_every == 0)):
        qids = [f"q{i}" for i in range(len(d))]
        test = paired_permutation_test(
            dict(zip(qids, d.tolist())), dict.fromkeys(qids, 0.0), n_permutations=rule.permutations(world), seed=seed
        )
        if inside:
            p = test.p_value
            out.permutation_tests += 1
        else:
            out.screen_checked += 1
            out.screen_disagreed += (test.p_value <= level) != (p <= level)
    return rule.decide(p)


def _holdout(world: World, night: int) -> int:
    return world.holdout0 + world.holdout_growth * night


@dataclass
class _Config:
    theta: float
    u: np.ndarray
    good: bool
    delta: float = 0.0


def _night_candidate(world: World, seed: int, night: int, champ: _Config) -> _Config:
    """The night's trials; the best on tune queries (its holdout scores drawn apart: tune and holdout differ)."""
    rng = np.random.default_rng([seed, night])
    n_tune = world.tune0 + world.tune_growth * night
    good_night = world.effect > 0 and night % world.every == 0
    thetas = np.full(world.trials, champ.theta)
    if good_night:
        thetas[0] += world.effect
    tune = thetas + rng.normal(0.0, world.sd * math.sqrt(2.0 / n_tune), world.trials)  # mean paired tune diff
    best = int(np.argmax(tune))
    return _Config(
        float(thetas[best]), rng.normal(0.0, world.sd, _holdout(world, world.nights)), good_night and best == 0
    )


def run_replay(world: World, rule, seed: int) -> Outcome:
    """100 nights (``world.nights``) of one replay under ``rule`` (a :class:`NewRule` or :class:`TodayRule`)."""
    out = Outcome(replay=seed)
    champ = _Config(0.0, np.random.default_rng([seed, 0]).normal(0.0, world.sd, _holdout(world, world.nights)), False)
    pool: list[_Config] = []
    for night in range(1, world.nights + 1):
        n = _holdout(world, night)
        cand = _night_candidate(world, seed, night, champ)
        out.good += world.effect > 0 and night % world.every == 0
        tries = [cand]
        promoted = False
        while tries and not promoted:
            c = tries.pop()
            d = (c.theta + c.u[:n]) - (champ.theta + champ.u[:n])
            c.delta = float(d.mean())
            promoted = _look(world, rule, night, d, world.seed, out)
            if promoted:
                if c.theta <= champ.theta:
                    out.false_promotions += 1
                    out.first_false_night = out.first_false_night or night
                out.good_promoted += c.good
                champ = c
                pool = [x for x in pool if x is not c]
            elif c is cand:
                pool = (pool + [c])[-world.pool :]
                if world.operator:
                    earlier = [x for x in pool if x is not cand and x.delta > 0]
                    if earlier:
                        tries.append(max(earlier, key=lambda x: x.delta))
        if out.false_promotions and world.effect == 0:
            break  # the null world's error is "any false promotion": the rest of the replay cannot change it
    return out
