"""Second-stage rerankers: cross-encoder (sentence-transformers), vllm (offline ``LLM.score``), openai-rerank
(HTTP ``/rerank``) and bi-encoder (a stronger embedder through the embedding cache).

Transports are registered lazily (:data:`RERANKERS`): importing this package imports neither torch nor vllm.
"""

from evolve.rerankers._base import Reranker
from evolve.rerankers._registry import (
    RERANKERS,
    get_reranker_class,
    register_reranker,
    transport_names,
)
from evolve.rerankers._run import (
    close_rerankers,
    get_reranker,
    rerank_lists,
    rerank_run,
)

__all__ = [
    "RERANKERS",
    "Reranker",
    "close_rerankers",
    "get_reranker",
    "get_reranker_class",
    "register_reranker",
    "rerank_lists",
    "rerank_run",
    "transport_names",
]
