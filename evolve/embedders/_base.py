"""The embedder extension point."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

    from evolve.config import EmbeddingConfig

__all__ = ["Embedder", "Kind"]

#: the role of the texts of one :meth:`Embedder.embed` call (the cache's kinds)
Kind = Literal["query", "document"]


class Embedder(abc.ABC):
    """Turns texts into vectors.

    Contract:

    * :meth:`embed` returns a C-contiguous ``float32`` array of shape ``(len(texts), dim)`` in input order, at
      the model's **full** dimension (truncated Matryoshka dimensions are derived by the caller), L2-normalised
      when ``config.normalize`` is true.
    * Texts arrive **final**: query/document prefixes are applied by the caller, never by the embedder.
    * ``kind`` says whether the texts are queries or documents. Local backends ignore it (prefixes carry the
      role); an HTTP backend may tell the server (``embedding.input_type``), and then its identity says so.
    * Truncation to ``config.max_length`` tokens is the embedder's job.
    * :meth:`identity` is a stable string that changes whenever the vectors could change (model weights or
      served revision, backend, dtype, pooling, normalisation, max length). It is the model part of every
      cache key, so it must be cheap: it must not load the model or import torch.
    * The model is loaded lazily on the first :meth:`embed` call, so a fully cached evaluation never loads it.
    * :meth:`close` releases resources; it is idempotent.
    * Errors a user can cause (missing model, unreachable endpoint) are :class:`evolve.errors.EvolveError`.
    """

    #: registry name of the backend
    name: str = "base"

    def __init__(self, config: EmbeddingConfig):
        self.config = config

    @abc.abstractmethod
    def identity(self) -> str:
        """Stable identity of everything that shapes a vector, except the text itself."""

    @abc.abstractmethod
    def embed(self, texts: list[str], *, kind: Kind = "document", progress=None) -> np.ndarray:
        """Embed ``texts`` (all of one ``kind``); ``progress(n)`` (optional) is called as batches finish."""

    def count_tokens(self, texts: list[str]) -> list[int]:  # pragma: no cover - optional
        raise NotImplementedError

    def close(self) -> None:
        """Release the model/engine/connections. Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
