"""Replay search strategies on a search table (issue 21): how much of a night each needs to find the best config.

Each strategy is the sampler ``evolve run --strategy NAME`` uses (:func:`evolve.study._strategy.make_strategy`),
driven through the real ``SearchSpace.sample`` by :func:`evolve.study.replay.replay`: a proposal is snapped to the
table's lattice (continuous params sit on a few points; the count of snapped proposals is printed), a repeat of a
done config is free, the clock charges a stage (dense vectors, BM25 statistics) the first time any trial of that
replay needs it and the warm trial every time. Strategies: ``tpe`` (the shipped sampler, as today), ``random``,
``grid`` (axis order), ``greedy`` (AutoRAG-style, one axis at a time in pipeline order), ``cost`` (cost-aware).

Figures, medians over seeds: time (and trials) until the incumbent's tune score is within 0.005 of the table's
best; the gap to the best and the incumbent's judge and report scores at a budget of twice the cost of every
stage once; distinct configs evaluated by then. A one-sided paired Wilcoxon test over seeds (declared before the
run: H1, ``cost`` reaches the target in less time than ``random``; time capped at the replay's limit) is printed.

    python benchmarks/search_replay.py --table benchmarks/results/search_table_small --seeds 50 \\
        --out benchmarks/results/search_replay
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolve.errors import ConfigError
from evolve.search_space import load_search_space
from evolve.study._strategy import STRATEGIES
from evolve.study.replay import Table, replay

TOLERANCE = 0.005


def _median(xs):
    xs = [x for x in xs]
    return statistics.median(xs) if xs else math.nan


def _fmt(x, nd=0):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if math.isinf(x):
        return "never"
    return f"{x:.{nd}f}"


def summarise(table: Table, traces: dict[str, list], limit: float) -> tuple[list[str], dict]:
    best = table.best
    target = best.tune - TOLERANCE
    budget = 2 * table.all_stage_seconds()
    lines = [
        "| strategy | median s to within 0.005 | vs random | median trials to it | reached | gap at 2x stages | "
        "judge at 2x | report at 2x | distinct configs at 2x | repeats / replay | snapped / replay |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    stats = {}
    rand_time = _median([t.time_to(target) for t in traces["random"]]) if "random" in traces else None
    for name, runs in traces.items():
        times = [t.time_to(target) for t in runs]
        trials = [next((i + 1 for i, v in enumerate(t.best_tune) if v >= target), math.inf) for t in runs]
        at = [t.at(budget) for t in runs]
        distinct = [sum(1 for s in t.seconds if s <= budget) for t in runs]
        med_time = _median(times)
        stats[name] = {"times": [min(x, limit) for x in times], "median_time": med_time}
        ratio = (
            med_time / rand_time if rand_time and not math.isinf(med_time) and not math.isinf(rand_time) else math.nan
        )
        lines.append(
            f"| {name} | {_fmt(med_time)} | {_fmt(ratio, 2)} | {_fmt(_median(trials))} | "
            f"{sum(not math.isinf(x) for x in times)}/{len(runs)} | "
            f"{_fmt(_median([best.tune - a[0] for a in at]), 4)} | {_fmt(_median([a[1] for a in at]), 4)} | "
            f"{_fmt(_median([a[2] for a in at]), 4)} | {_fmt(_median(distinct))} | "
            f"{_fmt(_median([t.repeats for t in runs]), 1)} | {_fmt(_median([t.snapped for t in runs]), 1)} |"
        )
    return lines, stats


def paired_test(stats: dict, a: str, b: str) -> str:
    if a not in stats or b not in stats:
        return f"paired test {a} < {b}: not run (both strategies are needed)"
    from scipy.stats import wilcoxon

    x, y = stats[a]["times"], stats[b]["times"]
    diffs = [u - v for u, v in zip(x, y)]
    if all(d == 0 for d in diffs):
        return f"paired Wilcoxon, time to target, {a} < {b}: every seed tied"
    res = wilcoxon(x, y, alternative="less", zero_method="wilcox")
    wins = sum(d < 0 for d in diffs)
    return (
        f"paired Wilcoxon signed-rank over {len(x)} seeds, time to within {TOLERANCE} (capped at the replay "
        f"limit), H1 {a} < {b}: p = {res.pvalue:.4g}; {a} faster on {wins}, slower on "
        f"{sum(d > 0 for d in diffs)}, tied on {sum(d == 0 for d in diffs)}"
    )


def plot(table: Table, traces: dict[str, list], limit: float, path: Path) -> None:
    import warnings

    import matplotlib

    warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)  # before a replay's first trial
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    grid = np.linspace(0, limit, 300)
    n_max = max(len(t.best_tune) for runs in traces.values() for t in runs)
    for i, (name, runs) in enumerate(traces.items()):
        color = f"C{i}"
        tune = np.array([[t.at(s)[0] for s in grid] for t in runs], dtype=float)
        judge = np.array([[t.at(s)[1] for s in grid] for t in runs], dtype=float)
        ax1.plot(grid, np.nanmedian(tune, axis=0), color=color, label=f"{name} tune")
        ax1.plot(grid, np.nanmedian(judge, axis=0), color=color, linestyle="--", label=f"{name} judge")
        by_trial = np.array([[t.best_tune[min(j, len(t.best_tune) - 1)] for j in range(n_max)] for t in runs])
        by_trial_j = np.array([[t.best_judge[min(j, len(t.best_judge) - 1)] for j in range(n_max)] for t in runs])
        ax2.plot(range(1, n_max + 1), np.median(by_trial, axis=0), color=color, label=f"{name} tune")
        ax2.plot(range(1, n_max + 1), np.median(by_trial_j, axis=0), color=color, linestyle="--")
    for ax in (ax1, ax2):
        ax.axhline(table.best.tune, color="grey", linewidth=0.8)
        ax.axhline(table.best.tune - TOLERANCE, color="grey", linewidth=0.5, linestyle=":")
        ax.set_ylabel("nDCG@10 of the incumbent (median over seeds)")
    ax1.axvline(2 * table.all_stage_seconds(), color="black", linewidth=0.6, linestyle=":")
    ax1.set_xlabel("seconds on the replay clock (dotted: 2x every stage once)")
    ax2.set_xlabel("trials (repeats not counted)")
    ax1.legend(fontsize=7, ncol=2)
    n_seeds = len(next(iter(traces.values())))
    fig.suptitle(
        f"anytime curves, {len(table.rows)} configs, {n_seeds} seeds: best tune so far (solid) "
        "and its judge score (dashed)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


_JOB: dict = {}


def _one(task: tuple[str, int]):
    """One replay in a worker (the table and space come with the fork)."""
    name, seed = task
    return replay(_JOB["table"], _JOB["space"], name, seed, max_seconds=_JOB["limit"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", required=True, help="a folder written by benchmarks/search_table.py")
    ap.add_argument("--space", default=None, help="the table's search space (default: the one its meta.json names)")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--limit", type=float, default=3.0, help="replay until this many times every stage's cost")
    ap.add_argument("--out", required=True, help="writes OUT.txt and OUT.png")
    ap.add_argument("--workers", type=int, default=1, help="replays run in this many processes (same results)")
    ap.add_argument(
        "--stage-rate",
        action="append",
        default=[],
        metavar="MODEL=TEXTS_PER_S",
        help="re-weight the stages of MODEL to texts / rate seconds (a GPU's measured throughput); repeatable",
    )
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    table = Table.read(Path(args.table))
    if args.stage_rate:
        rates = {}
        for item in args.stage_rate:
            model, sep, rate = item.rpartition("=")
            try:
                value = float(rate)
            except ValueError:
                value = math.nan
            if not sep or not model or math.isnan(value):
                raise SystemExit(f"error: --stage-rate: expected MODEL=TEXTS_PER_S, got '{item}'")
            if model in rates:
                raise SystemExit(f"error: --stage-rate: expected one rate per model, got '{model}' twice")
            rates[model] = value
        try:
            table = table.reweighted(rates)
        except ConfigError as err:
            raise SystemExit(f"error: {err}") from None
    space = load_search_space(args.space or table.meta["space"])
    limit = args.limit * table.all_stage_seconds() + sum(r.warm_seconds for r in table.rows.values())
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    _JOB.update(table=table, space=space, limit=limit)
    tasks = [(name, seed) for name in names for seed in range(args.seeds)]
    def progress(results):
        out = []
        for i, trace in enumerate(results, 1):
            out.append(trace)
            if i % 10 == 0 or i == len(tasks):
                print(f"replays: {i}/{len(tasks)} ({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)
        return out

    if args.workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(args.workers) as pool:
            done = progress(pool.imap(_one, tasks, chunksize=1))  # imap keeps the tasks' order
    else:
        done = progress(_one(t) for t in tasks)
    traces = {name: [tr for (n, _), tr in zip(tasks, done) if n == name] for name in names}
    lines, stats = summarise(table, traces, limit)
    best = table.best
    m = table.meta
    head = [
        f"# search replay on {args.table}",
        f"table: {len(table.rows)} configs, {len(table.stage_seconds)} stages, every stage once "
        f"{table.all_stage_seconds():.0f}s, every warm trial once {sum(r.warm_seconds for r in table.rows.values()):.0f}s; "
        f"built by `{m.get('command')}` in {m.get('wall_seconds')}s on {m.get('cpus')} CPUs (git {m.get('git_commit')})",
        *(
            [
                f"stage costs re-weighted: texts / rate for {m['stage_rates']} (texts per second; a query is "
                "charged like a document, so short queries are over-charged); BM25 stages and warm trials as measured"
            ]
            if m.get("stage_rates")
            else []
        ),
        f"dataset {m.get('dataset')} subset {m.get('subset')} ({m.get('n_documents')} documents); queries "
        f"{m.get('query_sets')}; metric {m.get('metric')}",
        f"best tune {best.tune:.4f} (judge {best.judge:.4f}, report {best.report:.4f}): {best.params}",
        f"oracle: the cheapest config within {TOLERANCE}, its stages and warm trial, {table.oracle_seconds(TOLERANCE):.0f}s "
        "(no strategy can reach the target sooner)",
        f"best judge in the table {max(r.judge for r in table.rows.values()):.4f}; "
        f"the shipped default is not in this table unless its space holds it",
        f"{args.seeds} seeds per strategy (0..{args.seeds - 1}); each replay runs until the table is exhausted, "
        f"25 repeats in a row, or {limit:.0f}s on the clock ({args.limit}x every stage + every warm trial once); "
        f"proposals snapped to the lattice {m.get('lattice')}",
        "",
    ]
    tail = [
        "",
        paired_test(stats, "cost", "tpe"),
        paired_test(stats, "cost", "random"),
        paired_test(stats, "cost", "greedy"),
        paired_test(stats, "tpe", "random"),
        f"replayed in {time.perf_counter() - t0:.0f}s ({args.workers} process(es)): `python benchmarks/search_replay.py "
        f"{' '.join(argv if argv is not None else sys.argv[1:])}`",
    ]
    text = "\n".join(head + lines + tail) + "\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text(text, encoding="utf-8")
    plot(table, traces, limit, out.with_suffix(".png"))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
