"""The reranker extension point."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from evolve.config import RerankConfig

__all__ = ["Reranker"]


class Reranker(abc.ABC):
    """Scores (query, document) pairs; a higher score means more relevant.

    Contract:

    * :meth:`score_batch` takes ``queries`` (n strings) and ``docs`` (n lists of strings, one list per query)
      and returns n ``float32`` arrays, ``len(docs[i])`` long, in input order. Scores are comparable within one
      query (that is all ranking needs); across queries they need not be.
    * Texts arrive **final**: ``rerank.query_prefix`` / ``rerank.doc_prefix`` are applied by the caller.
    * Truncation to ``config.max_length`` tokens (or the model's limit, whichever is smaller) is the reranker's
      job; a long document must never fail a run.
    * Models, engines and connections are loaded lazily on the first :meth:`score_batch`, so constructing a
      reranker (e.g. to validate a config) is cheap and imports neither torch nor vllm.
    * ``progress(n)`` (optional) is called as pairs finish.
    * Errors a user can cause (missing model, unreachable endpoint, missing API key) are
      :class:`evolve.errors.EvolveError` with a one-line message. Nothing is printed.
    * :meth:`close` releases resources and is idempotent. Pooled rerankers (see
      :func:`evolve.rerankers.get_reranker`) are shared by trials; per-call settings (batch size, timeout) come
      from ``self.config``, which the pool updates to the current trial's config.
    """

    #: registry name of the transport
    name: str = "base"

    def __init__(self, config: RerankConfig, *, cache=None, embedders=None, stats=None):
        self.config = config
        self.cache = cache
        self.embedders = embedders
        self.stats = stats

    @abc.abstractmethod
    def score_batch(self, queries: list[str], docs: list[list[str]], *, progress=None) -> list[np.ndarray]:
        """Relevance scores of ``docs[i]`` for ``queries[i]``."""

    def score(self, query: str, docs: list[str]):
        """Scores of ``docs`` for one ``query``."""
        return self.score_batch([query], [docs])[0]

    def close(self) -> None:
        """Release the model/engine/connections. Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def split_scores(flat, docs: list[list[str]]):
    """Cut one flat score sequence back into per-query float32 arrays."""
    import numpy as np

    flat = np.asarray(flat, dtype=np.float32).reshape(-1)
    out, i = [], 0
    for ds in docs:
        out.append(flat[i : i + len(ds)].copy())
        i += len(ds)
    return out
