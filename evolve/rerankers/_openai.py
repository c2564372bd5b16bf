"""A rerank HTTP endpoint in the Jina/Cohere shape, as ``vllm serve`` offers it.

``POST {base_url}/rerank`` (``base_url`` like ``http://127.0.0.1:8000/v1``; a bare host gets ``/v1``) with
``{"model", "query", "documents", "top_n"}``; the answer's ``results[{index, relevance_score}]`` are mapped back
to input order. ``truncate_prompt_tokens`` (``rerank.max_length``) is sent too: vLLM truncates long pairs with
it; other servers ignore it. The API key comes from the environment variable named by ``rerank.api_key_env``
and never appears in messages or logs. Retries, backoff and concurrency: :mod:`evolve._http`.
"""

from __future__ import annotations

import numpy as np

from evolve._platform import api_key_from_env
from evolve.errors import BackendError, ConfigError
from evolve.rerankers._base import Reranker

__all__ = ["OpenAIReranker"]


class OpenAIReranker(Reranker):
    name = "openai-rerank"

    def __init__(self, config, **kw):
        super().__init__(config, **kw)
        if not config.base_url:
            raise ConfigError("rerank.base_url: expected an http(s) URL for rerank.transport 'openai-rerank', got nothing")
        if not config.model:
            raise ConfigError("rerank.model: expected the served model name for rerank.transport 'openai-rerank', got nothing")
        self._client = None

    def _api_key(self) -> str | None:
        return api_key_from_env(self.config.api_key_env, "rerank.api_key_env")

    def client(self):
        if self._client is None:
            from evolve._http import HTTPClient

            self._client = HTTPClient(self.config.base_url, api_key=self._api_key(), timeout=self.config.timeout,
                                      max_retries=self.config.max_retries, max_concurrency=4, what="rerank endpoint")
        return self._client

    def score_batch(self, queries, docs, *, progress=None):
        out: list[np.ndarray] = [np.zeros(len(ds), dtype=np.float32) for ds in docs]
        todo = [i for i, ds in enumerate(docs) if ds]
        if not todo:
            return out
        client = self.client()
        payloads = [{"model": self.config.model, "query": queries[i], "documents": list(docs[i]),
                     "top_n": len(docs[i]), "truncate_prompt_tokens": int(self.config.max_length)} for i in todo]

        def done(j, result):
            if progress is not None:
                progress(len(docs[todo[j]]))

        results = client.post_many("rerank", payloads, on_result=done)
        for i, body in zip(todo, results):
            items = body.get("results") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise BackendError(f"rerank endpoint {client.display_url} answered without a 'results' list")
            scores = np.full(len(docs[i]), np.nan, dtype=np.float32)
            for item in items:
                try:
                    scores[int(item["index"])] = float(item["relevance_score"])
                except (KeyError, TypeError, ValueError, IndexError):
                    raise BackendError(f"rerank endpoint {client.display_url} answered a result without a valid "
                                       "'index' and 'relevance_score'") from None
            if np.isnan(scores).any():
                raise BackendError(f"rerank endpoint {client.display_url} scored {int((~np.isnan(scores)).sum())} of "
                                   f"{len(docs[i])} documents: expected all of them (top_n)")
            out[i] = scores
        return out

    def close(self):
        if self._client is not None:
            self._client.close()
            self._client = None
