"""The loop closing, measured: feedback gold against SciFact's qrels (Kendall's tau over a panel of configs), and
how many queries interleaving needs to tell a better config from a worse one, next to the holdout test.

Scripted users (evolve/testing/users.py: a cascade model with position-dependent examination, SciFact's qrels
deciding relevance, seeded) stand in for people. Everything goes through a real `evolve serve` app on
127.0.0.1 (in this process, so the model loads once per arm), over full SciFact, `train` queries only.

1. tau: 6 users search 60 seeded train queries on the default champion (dense MiniLM); `export_gold` turns their
   events into a gold folder; the PANEL of configs (cheap axes only) is scored with nDCG@10 under that gold and
   under SciFact's qrels of the same queries; Kendall's tau between the two rankings.
2. interleaving: champion = MiniLM at 16 Matryoshka dimensions (worse), challenger = hybrid MiniLM + BM25 (better);
   3 users search 200 train queries, in a seeded order. Counted in *queries*, not searches: a query's searches
   (three users repeating it) make one observation, the sign of its wins minus losses. Measured at looks declared
   here before the run (LOOKS: after the first 25, 50, 100 and 200 queries), every one reported, none chosen after
   the fact (no optional stopping), each with the gate's own rule and level:
   - interleaving: `promote-config --require-interleaving`'s check (evolve.feedback.interleaving_gate: wins >
     losses, one-sided sign test p <= 0.05, at least 30 queries with a preference);
   - holdout: promote-config's test (one-sided paired permutation test on nDCG@10) at the level its look would
     have in a fresh workspace under evolve.looks (look 1 at 0.05/102 = 0.00049, the next looks by the same rule),
     with the permutations promote-config runs there.
   And an A/A run (hybrid against itself) over the same queries, at the same looks.

    python benchmarks/feedback_loop.py --workspace .evolve-bench/serve     # reuses benchmarks/serve.py's cache
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def arm(base: Path, cache_src: Path, champion: str, challenger: str | None, queries: dict, qrels: dict, users,
        seed: int):
    """One in-process server on a fresh workspace (cache copied); users search; returns (store records, sim)."""
    from evolve.config import load_config
    from evolve.testing.serving import InProcessServer, post
    from evolve.testing.users import simulate

    ws = Path(tempfile.mkdtemp(prefix="arm-", dir=base))
    (ws / "cache").mkdir(parents=True)
    if cache_src.exists():
        shutil.copy(cache_src, ws / "cache" / "embeddings.sqlite")
    (ws / "champion.yaml").write_text(champion, encoding="utf-8")
    ch = None
    if challenger is not None:
        (ws / "challenger.yaml").write_text(challenger, encoding="utf-8")
        ch = load_config(ws / "challenger.yaml")
    with InProcessServer(ws, Path("scifact"), challenger=ch, query_id_seed=seed) as srv:
        sim = simulate(post, srv.url, queries, qrels, users)
        return srv.store.queries(), srv.store.events(), sim, ws


#: query counts at which both tests are read, declared before the run
LOOKS = (25, 50, 100, 200)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default=str(REPO / ".evolve-bench" / "serve"),
                    help="a workspace whose cache holds SciFact's MiniLM vectors (benchmarks/serve.py makes one)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "feedback_loop.txt"))
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()

    from evolve.datasets import Dataset, load_dataset
    from evolve.evaluate import evaluate_run, paired_permutation_test
    from evolve.feedback import export_gold, open_feedback_store
    from evolve.gold import read_gold
    from evolve.looks import advance, first_look, permutations_for
    from evolve.pipeline import Pipeline
    from evolve.testing.interleave_counts import interleaving_at, per_query, searches_of
    from evolve.testing.serving import DENSE16, HYBRID, PANEL, kendall_tau, panel_ndcg
    from evolve.testing.users import CascadeUser
    from evolve.workspace import Workspace

    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    cache_src = Path(args.workspace) / "cache" / "embeddings.sqlite"
    base = Path(tempfile.mkdtemp(prefix="evolve-feedback-loop-"))
    ds = load_dataset("scifact")
    train = sorted(ds.qrels["train"])
    random.Random(args.seed).shuffle(train)
    qrels = ds.qrels["train"]
    say("feedback loop benchmark: full SciFact, train queries only, scripted cascade users (a stand-in for people)")

    # ------------------------------------------------------------------ 1. tau
    tau_q = {q: ds.queries[q] for q in sorted(train[:60])}
    users = [CascadeUser(f"person-{i}", seed=args.seed) for i in range(6)]
    _, _, sim, ws = arm(base, cache_src, "retrieval:\n  mode: dense\n", None, tau_q, qrels, users, seed=args.seed)
    with open_feedback_store(Workspace(ws)) as store:
        summary = export_gold(store, base / "gold")
    gold = read_gold(base / "gold")
    cache = ws / "cache" / "embeddings.sqlite"
    fb = panel_ndcg(Dataset(ds.name, ds.source, ds.corpus, gold.queries, {}), gold.qrels, cache)
    ref = panel_ndcg(ds, {q: qrels[q] for q in tau_q}, cache)
    tau = kendall_tau(fb, ref)
    say(f"1. {len(tau_q)} queries x {len(users)} users = {sim['searches']} searches, {len(sim['events'])} events; "
        f"feedback gold: {summary.queries} queries, {summary.judgements} judgements {summary.by_grade}")
    say(f"{'config':<12} {'nDCG@10 feedback gold':>22} {'nDCG@10 SciFact qrels':>22}")
    for name in PANEL:
        say(f"{name:<12} {fb[name]:>22.4f} {ref[name]:>22.4f}")
    # the exact null: how often a random ranking of the panel reaches tau (every ordering of its configs)
    import itertools

    from scipy.stats import kendalltau

    names = sorted(ref)
    orders = list(itertools.permutations(range(len(names))))
    ranks = [ref[n] for n in names]
    reach = sum(kendalltau(ranks, list(o)).statistic >= tau - 1e-9 for o in orders)
    say(f"Kendall's tau between the two rankings: {tau:.3f}; a random ranking of these {len(names)} configs reaches "
        f"it with probability {reach}/{len(orders)} = {reach / len(orders):.3f}")

    # ------------------------------------------------------------------ 2. interleaving vs holdout
    inter_q = {q: ds.queries[q] for q in train[:200]}
    users3 = [CascadeUser(f"user-{i}", seed=args.seed) for i in range(3)]
    order = list(inter_q)
    texts = [inter_q[q] for q in order]
    queries, events, sim, _ = arm(base, cache_src, DENSE16, HYBRID, inter_q, qrels, users3, seed=args.seed + 1)
    outcomes, searches = per_query(queries, events, texts), searches_of(queries, events, texts)
    say()
    say(f"2. interleaving, champion dense-16 vs challenger hybrid-rrf: {len(order)} queries x 3 users = "
        f"{sim['searches']} searches, counted as {len(outcomes)} query observations (distinct texts): "
        f"{outcomes.count(1)} wins, "
        f"{outcomes.count(0)} ties, {outcomes.count(-1)} losses")

    def run_of(cfg_text: str, qids: list[str]):
        import yaml

        from evolve.cache import EmbeddingCache
        from evolve.config import PipelineConfig

        c = EmbeddingCache(cache)
        pipe = Pipeline(PipelineConfig.model_validate(yaml.safe_load(cfg_text)), ds, cache=c)
        try:
            return pipe.retrieve(qids)
        finally:
            pipe.close()
            c.close()

    weak, strong = run_of(DENSE16, order), run_of(HYBRID, order)
    look = first_look(0.05)
    say(f"   declared looks (queries): {', '.join(map(str, LOOKS))}; all reported")
    for n in LOOKS:
        sub = {q: qrels[q] for q in order[:n]}
        per = {name: evaluate_run(sub, {q: r[q] for q in sub}, ["ndcg@10"])[1] for name, r in
               (("champion", weak), ("candidate", strong))}
        test = paired_permutation_test(per["candidate"]["ndcg@10"], per["champion"]["ndcg@10"], seed=args.seed,
                                       n_permutations=permutations_for(look.level))
        passed = look.passes(test.p_value)
        ok, why = interleaving_at(outcomes, n, searches=sum(searches[:n]))
        say(f"   {n:>3} queries: interleaving gate {'PASS' if ok else 'no'} ({why}); holdout test "
            f"{'PASS' if passed else 'no'} (p = {test.p_value:.2g}, look {look.look} at level {look.level:.3g}, "
            f"{test.n_permutations} permutations, mean gain {test.mean_difference:+.3f})")
        look = advance(look, passed)

    queries, events, sim, _ = arm(base, cache_src, HYBRID, HYBRID, inter_q, qrels, users3, seed=args.seed + 2)
    aa, aa_searches = per_query(queries, events, texts), searches_of(queries, events, texts)
    say(f"3. A/A (hybrid-rrf against itself), {sim['searches']} searches = {len(aa)} query observations: "
        f"{aa.count(1)} wins, {aa.count(0)} ties, {aa.count(-1)} losses")
    for n in LOOKS:
        ok, why = interleaving_at(aa, n, searches=sum(aa_searches[:n]))
        say(f"   {n:>3} queries: interleaving gate {'PASS: a false positive' if ok else 'no'} ({why})")
    shutil.rmtree(base, ignore_errors=True)
    import time

    from evolve.provenance import git_commit

    head = (f"# python benchmarks/feedback_loop.py --workspace {args.workspace} --seed {args.seed}  "
            f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, git {git_commit()}, {os.cpu_count()} CPUs)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join([head, *lines]) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
