"""Issue 21: benchmarks/search_table.py measures a bi-encoder rerank's vectors as a stage, once, so that every
config's warm trial embeds nothing (a small real build: BM25 over a SciFact subset, a MiniLM rerank)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

SPACE = """\
base: default
fixed:
  retrieval.mode: sparse
  rerank.model: all-MiniLM-L6-v2
  rerank.max_length: 128
  rerank.query_prefix: "query: "
  rerank.doc_prefix: "passage: "
params:
  rerank.transport: {choices: [none, bi-encoder]}
  rerank.depth: {choices: [20], when: {rerank.transport: [bi-encoder]}}
"""
N_DOCS = 60
BM25 = "bm25|none|english"
RERANK = "rerank|bi-encoder:all-MiniLM-L6-v2:128|query: /passage: "


@pytest.fixture(scope="module")
def search_table():
    from conftest import REPO

    spec = importlib.util.spec_from_file_location("search_table", REPO / "benchmarks" / "search_table.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop(spec.name, None)


def _build(mod, tmp_path, name):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    argv = ["--subset", str(N_DOCS), "--space", str(space), "--workspace", str(tmp_path / "ws"),
            "--out", str(tmp_path / name)]
    return mod.main(argv)


def test_the_rerank_stage_is_every_document_and_query_once_and_the_trials_run_warm(search_table, tmp_path):
    from evolve.datasets import load_dataset
    from evolve.study.replay import Table

    assert _build(search_table, tmp_path, "table") == 0
    table = Table.read(tmp_path / "table")
    ds = load_dataset("scifact").subset(N_DOCS)
    sets = search_table.query_sets(ds, 0)
    qids = set(sets["tune"]) | set(sets["judge"]) | set(sets["report"])
    # the rerank embeds each document's full text and each query of the three sets (not the study holdout's)
    expected = len({d.full_text for d in ds.corpus.values()}) + len({ds.queries[q] for q in qids})
    assert len(qids) < len(ds.queries)
    assert table.stage_texts == {BM25: N_DOCS, RERANK: expected}
    assert sorted(r.stages for r in table.rows.values()) == [(BM25,), (BM25, RERANK)]
    assert all(s > 0 for s in table.stage_seconds.values())
    # a second build on the same cache would find every vector there and read its stages as free: refused
    with pytest.raises(SystemExit, match=r"expected an empty embedding cache, got \d+ vectors"):
        _build(search_table, tmp_path, "again")


def test_a_stage_left_unmeasured_stops_the_build_instead_of_charging_a_warm_trial(search_table, tmp_path, monkeypatch):
    monkeypatch.setattr(search_table, "_rerank_stage", lambda *a, **k: 0)  # measures nothing
    with pytest.raises(SystemExit, match=r"expected a warm trial \(every stage measured\), got \d+ texts embedded"):
        _build(search_table, tmp_path, "broken")
