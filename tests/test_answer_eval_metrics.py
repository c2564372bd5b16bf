"""Worked examples for what `evolve answer eval` computes without an LLM: citation precision and recall against
qrels, refusal rates, ALCE support from given judgements, latency percentiles, the unanswerable variant and the
query sample. Every expected value is derived by hand in the test."""

from __future__ import annotations

import pytest

from evolve.answer.metrics import (
    CitedAnswer,
    Claim,
    alce_support,
    citation_precision_recall,
    latency_summary,
    percentile,
    refusal_rates,
)


def test_citation_precision_and_recall_worked_example():
    qrels = {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}, "q3": {"d4": 1}, "q4": {"d5": 1}}
    answers = [
        CitedAnswer("q1", ["d1", "d2", "d9"], refused=False),  # 1 relevant of 3 (d2 judged 0: not relevant)
        CitedAnswer("q2", ["d3"], refused=False),  # 1 of 1
        CitedAnswer("q3", [], refused=False),  # answered, cites nothing: no relevant citation
        CitedAnswer("q4", ["d5"], refused=True),  # refused: left out of both
    ]
    got = citation_precision_recall(answers, qrels)
    # precision, pooled: (1 + 1 + 0) relevant of (3 + 1 + 0) citations = 2/4
    assert got["citation_precision"] == pytest.approx(0.5)
    assert (got["n_citations"], got["n_relevant_citations"]) == (4, 2)
    # recall: q1 and q2 of the 3 answered questions have a relevant citation = 2/3
    assert got["citation_recall"] == pytest.approx(2 / 3)
    assert (got["n_answered"], got["n_answered_with_relevant"]) == (3, 2)


def test_citation_metrics_are_undefined_without_citations_or_answers():
    got = citation_precision_recall([CitedAnswer("q1", [], refused=True)], {"q1": {"d1": 1}})
    assert got["citation_precision"] is None and got["citation_recall"] is None


def test_refusal_rates_worked_example():
    # answerable: 1 refusal of 4 asked (one failed: None, not counted) -> false refusal 1/4
    # unanswerable: 3 refusals of 4 -> refusal rate 3/4
    got = refusal_rates([False, True, False, None, False], [True, True, False, True])
    assert got["false_refusal_rate"] == pytest.approx(0.25) and got["n_answerable"] == 4
    assert got["refusal_rate"] == pytest.approx(0.75) and got["n_unanswerable"] == 4
    assert refusal_rates([], [None])["refusal_rate"] is None


def test_percentiles_interpolate_linearly():
    xs = [40.0, 10.0, 30.0, 20.0, None]  # None (no first token) is left out: sorted 10, 20, 30, 40
    # p50: h = (4 - 1) * 0.5 = 1.5 -> 20 + 0.5 * (30 - 20) = 25
    assert percentile(xs, 50) == pytest.approx(25.0)
    # p95: h = 3 * 0.95 = 2.85 -> 30 + 0.85 * (40 - 30) = 38.5
    assert percentile(xs, 95) == pytest.approx(38.5)
    assert percentile(xs, 0) == 10.0 and percentile(xs, 100) == 40.0
    assert percentile([7.0], 95) == 7.0 and percentile([None], 50) is None
    got = latency_summary([100.0, 300.0], [1000.0, 2000.0, 3000.0])
    # ttft p50: h = 0.5 -> 200; p95: h = 0.95 -> 100 + 0.95 * 200 = 290; total p50 2000, p95: h = 1.9 -> 2900
    assert got == pytest.approx(
        {"ttft_p50_ms": 200.0, "ttft_p95_ms": 290.0, "total_p50_ms": 2000.0, "total_p95_ms": 2900.0}
    )
    with pytest.raises(ValueError):
        percentile(xs, 101)


def test_alce_support_from_given_judgements():
    """Two answers; the judge says yes exactly for the (premise, claim) pairs listed in ``supports``."""
    a, b, c = "Title: A\nalpha", "Title: B\nbeta", "Title: C\ngamma"
    supports = {
        ("\n".join([a]), "s1"),  # s1 cites [A]: supported
        ("\n".join([a, b]), "s2"),  # s2 cites [A, B]: supported jointly
        (a, "s2"),  # A alone supports s2 -> A relevant; B alone does not, and A (the rest) supports without B:
        # B is an over-citation, not relevant
        ("\n".join([b, c]), "s4"),  # s4 cites [B, C]: supported jointly; neither alone, and neither rest alone
        # -> both relevant (each is needed)
    }
    calls: list[int] = []

    def judge(pairs):
        calls.append(len(pairs))
        return [p in supports for p in pairs]

    answers = [
        [Claim("s1", [a]), Claim("s2", [a, b]), Claim("s3", [])],  # s3 uncited: unsupported
        [Claim("s4", [b, c]), Claim("s5", [c])],  # s5 cites [C]: the judge says no
    ]
    got = alce_support(answers, judge)
    # answer 1: recall 2/3 (s1, s2 of 3); citations: s1 1 (relevant), s2 2 (A relevant, B not) -> precision 2/3
    # answer 2: recall 1/2 (s4); citations: s4 2 (both relevant), s5 1 (unsupported: not relevant) -> 2/3
    assert got["support_recall"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert got["support_precision"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    # round 1: one call per cited sentence (s1, s2, s4, s5) = 4 pairs; round 2: s2 and s4 each 2 citations x
    # (alone, rest) = 8 pairs
    assert calls == [4, 8] and got["n_judge_calls"] == 12 and got["n_judged_answers"] == 2


def test_alce_keeps_at_most_three_citations_and_skips_empty_answers():
    seen = []

    def judge(pairs):
        seen.extend(pairs)
        return [True] * len(pairs)

    p = [f"Title: {i}\n{i}" for i in range(5)]
    got = alce_support([[Claim("s", p)], []], judge)
    assert seen[0][0] == "\n".join(p[:3])  # ALCE's at_most_citations=3
    # every citation alone supports: all 3 relevant; the empty answer is skipped
    assert got["support_recall"] == 1.0 and got["support_precision"] == 1.0 and got["n_judged_answers"] == 1
    assert alce_support([], judge)["support_recall"] is None


def test_the_unanswerable_variant_drops_relevant_documents_and_renumbers():
    from evolve.answer._eval import without_relevant
    from evolve.passages import Retrieval, RetrievedDoc

    docs = [RetrievedDoc(d, i + 1, 1.0 / (i + 1), [], chunked=False) for i, d in enumerate(["a", "b", "c", "d"])]
    got = without_relevant(Retrieval(docs, ("sparse",), False), {"b", "d"})
    assert [(d.doc_id, d.rank) for d in got.docs] == [("a", 1), ("c", 2)]
    assert len(docs) == 4 and docs[2].rank == 3  # the original is untouched


def test_query_sample_is_seeded_and_keeps_only_judged_relevant():
    from evolve.answer._eval import select_queries

    queries = {f"q{i}": "text" for i in range(10)}
    qrels = {f"q{i}": {"d": 1} for i in range(9)} | {"q9": {"d": 0}, "missing": {"d": 1}}
    everything = select_queries(queries, qrels, None)
    assert everything == sorted(f"q{i}" for i in range(9))  # q9 has no relevant document, 'missing' no text
    some = select_queries(queries, qrels, 4, seed=1)
    assert len(some) == 4 and set(some) <= set(everything) and some == sorted(some)
    assert select_queries(queries, qrels, 4, seed=1) == some


def test_strip_markers_before_em_f1():
    from evolve.answer._eval import strip_markers

    assert strip_markers("Paris is the capital [1]. It is big [2, 3].") == "Paris is the capital. It is big."
