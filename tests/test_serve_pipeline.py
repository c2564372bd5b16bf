"""Pipeline.search_texts, the serving path for ad-hoc query texts, gives exactly what retrieve() gives for the
same texts as dataset queries (dense, sparse and hybrid), and keeps nothing per query."""

from __future__ import annotations

import pytest
from serve_helpers import write_mixed_corpus


def test_search_texts_equals_retrieve(tmp_path):
    from evolve.config import PipelineConfig
    from evolve.datasets import load_dataset
    from evolve.embedders import EmbedderPool
    from evolve.pipeline import Pipeline

    ds = load_dataset(write_mixed_corpus(tmp_path / "corpus"))
    qids = sorted(ds.queries)
    pool = EmbedderPool()  # one MiniLM for the three modes
    try:
        for mode in ("dense", "sparse", "hybrid"):
            pipe = Pipeline(PipelineConfig.model_validate({"retrieval": {"mode": mode}}), ds, embedders=pool)
            by_id = pipe.retrieve(qids)
            kept = dict(pipe._qvecs)
            by_text = pipe.search_texts([ds.queries[q] for q in qids])
            assert pipe._qvecs == kept, mode  # ad-hoc queries leave no per-query state behind
            for q, ranked in zip(qids, by_text):
                assert set(ranked) == set(by_id[q]) and ranked == pytest.approx(by_id[q]), (mode, q)
            assert [max(r, key=r.get) for r in by_text] == ["vpn", "printer"], mode
            assert pipe.search_texts([]) == []
    finally:
        pool.close()
