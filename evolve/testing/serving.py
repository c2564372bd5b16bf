"""The in-process server, a JSON client and the panel of configs, shared by the serve tests and the benchmarks.

:class:`InProcessServer` runs the same app as ``evolve serve`` (LiveChampion + SearchEngine + create_app under
uvicorn) on 127.0.0.1 in a thread of the calling process; :data:`PANEL` is six configs that differ only on cheap
axes (MiniLM whole documents: every vector comes from the cache), ranked by :func:`panel_ndcg`.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

__all__ = ["DENSE16", "HYBRID", "PANEL", "InProcessServer", "get", "kendall_tau", "panel_ndcg", "post"]


_local = threading.local()


def _client():
    """One keep-alive httpx client per thread (a new client per request costs tens of ms: it builds an SSL
    context even for http)."""
    import httpx

    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(timeout=60)
    return client


def post(url: str, body, *, key: str | None = None, timeout: float = 60, raw: bytes | None = None,
         content_type: str = "application/json"):
    headers = {"Content-Type": content_type}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    return _client().post(url, content=data, headers=headers, timeout=timeout)


def get(url: str, *, key: str | None = None, timeout: float = 30):
    return _client().get(url, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=timeout)


HYBRID = """\
# MiniLM dense + BM25 (english), reciprocal rank fusion: the hybrid champion of the serve tests
retrieval:
  mode: hybrid
  top_k: 100
fusion:
  method: rrf
  rrf_k: 10
"""

DENSE16 = """\
# MiniLM truncated to 16 Matryoshka dimensions: a deliberately weak challenger
embedding:
  dim: 16
retrieval:
  mode: dense
  top_k: 100
"""


class InProcessServer:
    """The same app `evolve serve` runs (LiveChampion + SearchEngine + create_app under uvicorn) on 127.0.0.1,
    in a thread of the calling process: models load once per process, not once per server start. The CLI path is
    covered by the tests' `Server`; this one is for experiments that need several servers (champion vs
    challenger, A/A) or settings the command line does not offer (``options``: :class:`~evolve.serve.ServeOptions`
    fields; ``live_options``: :class:`~evolve.serve.LiveChampion` ones; ``overrides``: ``--set KEY=VALUE`` as
    ``evolve serve`` takes them)."""

    def __init__(self, ws: Path, dataset: Path, *, challenger=None, query_id_seed: int | None = None,
                 store_url: str | None = None, keep_query_text: bool = True, overrides: tuple[str, ...] = (),
                 max_answers: int = 4, options: dict | None = None, live_options: dict | None = None):
        import random
        import threading

        import uvicorn

        from evolve._servers import free_port
        from evolve.cache import EmbeddingCache
        from evolve.feedback import open_feedback_store
        from evolve.serve import (
            ChampionFile,
            CorpusSource,
            LiveChampion,
            SearchEngine,
            ServeOptions,
            create_app,
        )
        from evolve.workspace import Workspace

        workspace = Workspace(ws).ensure()
        self.store = open_feedback_store(workspace, store_url)
        self.live = LiveChampion(ChampionFile(workspace, tuple(overrides)), CorpusSource(str(dataset), None, str(dataset)),
                                 cache_factory=lambda: EmbeddingCache.open(workspace), challenger_config=challenger,
                                 challenger_label="test challenger", **(live_options or {}))
        self.live.start()
        self.engine = SearchEngine()
        ids = None
        if query_id_seed is not None:
            rng = random.Random(query_id_seed)
            ids = lambda: f"{rng.getrandbits(128):032x}"  # noqa: E731
        app = create_app(self.live, self.store, self.engine,
                         ServeOptions(query_ids=ids, keep_query_text=keep_query_text, max_answers=max_answers,
                                      **(options or {})))
        self.answers = app.services.answers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.engine.close()
        self.live.close()
        self.store.close()
        self.answers.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


#: configs that differ only on cheap axes (MiniLM whole documents: every vector comes from the cache)
PANEL = {
    "dense": "retrieval:\n  mode: dense\n",
    "dense-64": "embedding:\n  dim: 64\nretrieval:\n  mode: dense\n",
    "dense-16": "embedding:\n  dim: 16\nretrieval:\n  mode: dense\n",
    "bm25": "retrieval:\n  mode: sparse\n",
    "hybrid-rrf": "retrieval:\n  mode: hybrid\nfusion:\n  method: rrf\n  rrf_k: 10\n",
    "hybrid-wsum": "retrieval:\n  mode: hybrid\nfusion:\n  method: wsum\n  weight: 0.4\n",
}


def panel_ndcg(dataset, qrels: dict[str, dict[str, int]], cache_file: Path, metric: str = "ndcg@10",
               panel: dict[str, str] | None = None) -> dict[str, float]:
    """nDCG@10 of every config of ``panel`` (default :data:`PANEL`) on ``qrels`` (queries from
    ``dataset.queries``), one embedder for all."""
    import yaml

    from evolve.cache import EmbeddingCache
    from evolve.config import PipelineConfig
    from evolve.datasets import Dataset
    from evolve.embedders import EmbedderPool
    from evolve.pipeline import evaluate_config

    view = Dataset(dataset.name, dataset.source, dataset.corpus, dataset.queries, {"panel": qrels})
    cache, pool, out = EmbeddingCache(cache_file), EmbedderPool(), {}
    try:
        for name, text in (panel or PANEL).items():
            cfg = PipelineConfig.model_validate(yaml.safe_load(text))
            out[name] = evaluate_config(cfg, view, "panel", cache=cache, embedders=pool, metrics=[metric]).metrics[metric]
    finally:
        pool.close()
        cache.close()
    return out


def kendall_tau(a: dict[str, float], b: dict[str, float]) -> float:
    from scipy.stats import kendalltau

    names = sorted(a)
    return float(kendalltau([a[n] for n in names], [b[n] for n in names]).statistic)
