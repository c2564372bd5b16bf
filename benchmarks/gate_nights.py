"""Does the promotion gate keep its promise across nights? 100 nights of promote-config, replayed.

Each replay (evolve/testing/gate_sim.py; synthetic per-query scores, a stand-in for real pipelines) runs 100
nights: the holdout starts at 100 queries and gains 4 every night, keeping the old ones (gold grows, queries
are reused); each night 8 trials are tried, and the best on tune queries is tested against the champion on the
holdout (scenario a). In scenario b an operator who saw the last holdout deltas also re-tests, when the night's
look did not promote, the earlier candidate with the highest holdout delta. Per-query paired differences have
sd 0.088 (SciFact's measured paired sd). Every look is decided by the shipped rule (evolve.looks.advance and
LookBudget.passes, what promote-config calls) and, when the normal approximation of the sign-flip p is within a
factor 3 of the level (--screen), by the shipped test (evolve.evaluate.paired_permutation_test) at the
permutations promote-config would run (max(10000, 5/level)); every 20,000th look outside that window runs the test
too (--check-every), and the disagreements are counted. The horizon sweep (H of the spending sequence) decides
every look by the normal approximation, to be cheap.

- null world: no candidate is ever better; the error is "any false promotion in 100 nights" (family-wise), with
  its 95% Clopper-Pearson interval;
- alternative world: one trial every 10 nights is truly better than the champion by +0.02 nDCG@10; the share of
  those promoted (power), new rule beside today's (seeds 0..n-1 of each: the same worlds as far as both got;
  with --budget-s the two rules may stop at different n, and the comparison is then not paired).

Today's rule is main's before issue 19: a fresh 10 looks at 0.05/10 for every new holdout fingerprint; the holdout
gains queries every night, so every night is fresh.

    nice -n 10 python benchmarks/gate_nights.py --workers 2              # writes benchmarks/results/gate_nights.txt
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _chunk(job):
    """Replays ``seeds`` of ``world`` under the rule named ``rule``: per replay the outcome's counters."""
    from evolve.testing.gate_sim import NewRule, TodayRule, run_replay

    world, rule, horizon, seeds = job
    out = []
    for seed in seeds:
        r = NewRule(world.alpha, horizon) if rule == "new" else TodayRule(world.alpha)
        o = run_replay(world, r, seed)
        out.append((o.false_promotions, o.good, o.good_promoted, o.looks, o.permutation_tests, o.screen_checked,
                    o.screen_disagreed))
    return out


def replays(pool, world, rule: str, n: int, horizon: int | None = None, budget_s: float | None = None) -> dict:
    """Replays 0..n-1 (seeds), in rounds of one chunk a worker; with ``budget_s``, no new round starts after that
    many seconds, and the replays done are what is reported."""
    step = max(1, min(25, n // 64))
    jobs = [(world, rule, horizon, range(i, min(n, i + step))) for i in range(0, n, step)]
    rows, t0, width = [], time.time(), pool._processes
    for k in range(0, len(jobs), width):
        if budget_s is not None and rows and time.time() - t0 > budget_s:
            break
        rows += [row for part in pool.map(_chunk, jobs[k:k + width]) for row in part]
    keys = ("false", "good", "good_promoted", "looks", "perm_tests", "checked", "disagreed")
    total = {k: sum(r[i] for r in rows) for i, k in enumerate(keys)}
    total["replays"] = len(rows)
    total["any_false"] = sum(r[0] > 0 for r in rows)
    total["rows"] = rows
    return total


def paired_ratio(new_rows: list, today_rows: list, resamples: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """Power new / today over the same replays (row i of each is seed i), with a 95% percentile bootstrap interval
    that resamples replays (a replay's candidates share its holdout, so replays are the independent unit)."""
    import numpy as np

    n = min(len(new_rows), len(today_rows))
    a = np.array([r[2] for r in new_rows[:n]], dtype=float)  # truly better promoted, per replay
    b = np.array([r[2] for r in today_rows[:n]], dtype=float)
    if b.sum() == 0:  # today's rule promoted nothing: no ratio to give
        return float("nan"), float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    ratios = a[idx].sum(axis=1) / np.maximum(b[idx].sum(axis=1), 1e-12)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(a.sum() / b.sum()), float(lo), float(hi)


def interval(k: int, n: int) -> tuple[float, float]:
    """Clopper-Pearson 95%."""
    from scipy.stats import beta

    return (float(beta.ppf(0.025, k, n - k + 1)) if k else 0.0,
            float(beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0)


def _fmt(k: int, n: int) -> str:
    lo, hi = interval(k, n)
    return f"{k / n:.4f} [{lo:.4f}, {hi:.4f}] ({k}/{n})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--null-replays", type=int, default=10000, help="null-world replays of the new rule")
    ap.add_argument("--today-null-replays", type=int, default=1000, help="null-world replays of today's rule")
    ap.add_argument("--alt-replays", type=int, default=1000, help="+0.02-world replays of each rule")
    ap.add_argument("--sweep-replays", type=int, default=500,
                    help="replays per horizon in the horizon sweep (normal-approximation p only; 0: none)")
    ap.add_argument("--screen", type=float, default=3.0, help="the permutation test runs within this factor of the level")
    ap.add_argument("--check-every", type=int, default=20000,
                    help="also run it on every n-th look outside that window, counting disagreements")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--budget-s", type=float, default=None,
                    help="seconds a part may take (the new rule's null world 4x, each horizon of the sweep 1/4); a part "
                    "stops between rounds and reports the replays it did")
    ap.add_argument("--scenarios", default="ab", help="which scenarios to run: a, b or ab")
    ap.add_argument("--power-only", action="store_true",
                    help="only the +0.02 world: both rules on the same --alt-replays seeds, no --budget-s, and their "
                    "power ratio with a bootstrap interval over replays (the paired comparison)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "gate_nights.txt"))
    args = ap.parse_args()

    from evolve.looks import HORIZON, first_look, gamma
    from evolve.testing.gate_sim import World

    t0 = time.time()
    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    base = World(screen=args.screen, check_every=args.check_every)
    say("gate_nights: 100 nights of promote-config, synthetic per-query scores (evolve/testing/gate_sim.py)")
    say(f"world: holdout {base.holdout0} + {base.holdout_growth}/night (reused), {base.trials} trials/night, paired sd "
        f"{base.sd * 2 ** 0.5:.3f}, alpha {base.alpha}; rule: alpha-spending with online fallback, horizon {HORIZON}")
    say("levels of the new rule without hand-on: " + ", ".join(
        f"look {j} {base.alpha * gamma(j):.2e}" for j in (1, 10, 50, 100, 200)) + " (today: 0.005 every look)")
    assert first_look(base.alpha).level == base.alpha * gamma(1)
    ctx = mp.get_context("fork")
    with ctx.Pool(args.workers) as pool:
        for name, operator in (("a: the best of the night's trials on tune queries", False),
                               ("b: an operator re-tests after seeing the last holdout deltas", True)):
            if name[0] not in args.scenarios:
                continue
            say()
            say(f"scenario {name}")
            null = replace(base, operator=operator)
            alt = replace(null, effect=0.02)
            for rule, label, n in (() if args.power_only else (("new", "new rule  ", args.null_replays),
                                                               ("today", "today     ", args.today_null_replays))):
                r = replays(pool, null, rule, n, budget_s=args.budget_s and args.budget_s * (4 if rule == "new" else 1))
                say(f"  null world, {label}: any false promotion in 100 nights {_fmt(r['any_false'], r['replays'])}; "
                    f"{r['looks']} looks, {r['perm_tests']} permutation tests, screen disagreements "
                    f"{r['disagreed']}/{r['checked']}")
            power, rows = {}, {}
            for rule, label in (("new", "new rule  "), ("today", "today     ")):
                r = replays(pool, alt, rule, args.alt_replays, budget_s=None if args.power_only else args.budget_s)
                power[rule], rows[rule] = r["good_promoted"] / r["good"], r["rows"]
                say(f"  +0.02 world, {label}, {r['replays']} replays: truly better promoted "
                    f"{_fmt(r['good_promoted'], r['good'])}; replays "
                    f"with a false promotion {_fmt(r['any_false'], r['replays'])}; screen disagreements "
                    f"{r['disagreed']}/{r['checked']}")
            say(f"  power, new / today: {power['new']:.3f} / {power['today']:.3f} = {power['new'] / power['today']:.2f} "
                "(target >= 0.5)")
            if len(rows["new"]) == len(rows["today"]):
                ratio, lo, hi = paired_ratio(rows["new"], rows["today"])
                say(f"  paired over the same {len(rows['new'])} replays (seeds 0..{len(rows['new']) - 1}): power ratio "
                    f"{ratio:.2f} [{lo:.2f}, {hi:.2f}] (95% bootstrap over replays)")
            else:
                say(f"  not paired: the rules stopped at {len(rows['new'])} and {len(rows['today'])} replays (--budget-s)")
            if args.sweep_replays and not args.power_only:
                cells = []
                quick = replace(alt, screen=1.0, check_every=0)  # the normal approximation decides every look
                r = replays(pool, quick, "today", args.sweep_replays, budget_s=args.budget_s and args.budget_s / 4)
                today, r_today = r["good_promoted"] / r["good"], r["replays"]
                for h in (10, 30, 100, 300, 1000):
                    r = replays(pool, quick, "new", args.sweep_replays, horizon=h, budget_s=args.budget_s and args.budget_s / 4)
                    cells.append(f"H {h}: {r['good_promoted'] / r['good']:.3f} ({r['replays']})")
                say(f"  horizon sweep, +0.02 world, {args.sweep_replays} replays each, normal-approximation p: "
                    f"today {today:.3f} ({r_today}); " + ", ".join(cells))
            Path(args.out).with_suffix(".partial").write_text("\n".join(lines) + "\n", encoding="utf-8")
    wall = time.time() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(r.ru_utime + r.ru_stime for r in ru)
    say()
    say(f"took {wall:.0f} s wall, {cpu:.0f} s CPU, {args.workers} worker(s); "
        f"python benchmarks/gate_nights.py --null-replays {args.null_replays} --today-null-replays "
        f"{args.today_null_replays} --alt-replays {args.alt_replays} --sweep-replays {args.sweep_replays} --screen "
        f"{args.screen:g} --check-every {args.check_every} --workers {args.workers} --scenarios {args.scenarios}"
        + (f" --budget-s {args.budget_s:g}" if args.budget_s else "") + (" --power-only" if args.power_only else ""))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
