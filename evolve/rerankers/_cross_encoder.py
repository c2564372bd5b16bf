"""sentence-transformers ``CrossEncoder`` (local weights only)."""

from __future__ import annotations

import numpy as np

from evolve._platform import quiet_hf
from evolve.errors import BackendError
from evolve.rerankers._base import Reranker, split_scores
from evolve.rerankers._common import (
    default_dtype,
    max_tokens,
    model_folder,
    torch_device,
)

__all__ = ["CrossEncoderReranker"]


class CrossEncoderReranker(Reranker):
    """``CrossEncoder(model).predict(pairs)``: the model's default activation (sigmoid for one label)."""

    name = "cross-encoder"

    def __init__(self, config, **kw):
        super().__init__(config, **kw)
        self.path = model_folder(config)
        self._model = None

    def _load(self):
        if self._model is None:
            quiet_hf()
            import torch
            from sentence_transformers import CrossEncoder

            device = torch_device()
            dtype = default_dtype(self.config, device)
            try:
                self._model = CrossEncoder(
                    str(self.path), device=device, max_length=max_tokens(self.config, self.path),
                    local_files_only=True, model_kwargs={"dtype": getattr(torch, dtype)},
                )
            except Exception as exc:
                msg = " ".join(str(exc).split())[:200]
                raise BackendError(f"rerank.model: could not load cross-encoder {self.path}: {type(exc).__name__}: {msg}") from None
        return self._model

    def score_batch(self, queries, docs, *, progress=None):
        pairs = [(q, d) for q, ds in zip(queries, docs) for d in ds]
        if not pairs:
            return [np.zeros(0, dtype=np.float32) for _ in docs]
        model = self._load()
        bs = self.config.batch_size
        step = bs * 8
        out = []
        for i in range(0, len(pairs), step):
            part = pairs[i : i + step]
            out.append(np.asarray(model.predict(part, batch_size=bs, show_progress_bar=False, convert_to_numpy=True),
                                  dtype=np.float32).reshape(-1))
            if progress is not None:
                progress(len(part))
        return split_scores(np.concatenate(out), docs)

    def close(self):
        self._model = None
