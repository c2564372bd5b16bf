"""sentence-transformers backend (local weights, CPU or GPU)."""

from __future__ import annotations

import json

import numpy as np

from evolve._platform import cuda_visible, quiet_hf
from evolve.embedders._base import Embedder
from evolve.embedders._models import resolve_model_path, weights_hash

__all__ = ["SentenceTransformerEmbedder"]


def _pooling(path) -> str:
    cfg = path / "1_Pooling" / "config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        return ",".join(k for k, v in sorted(data.items()) if k.startswith("pooling_mode") and v is True)
    return "default"


class SentenceTransformerEmbedder(Embedder):
    name = "sentence-transformers"

    def __init__(self, config):
        super().__init__(config)
        self.path = resolve_model_path(config.model)
        self._model = None

    @property
    def device(self) -> str:
        if self.config.device:
            return self.config.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def _dtype(self) -> str:
        if self.config.dtype:
            return self.config.dtype
        # float32 on CPU; the GPU default (float16) is decided without importing torch when CUDA is hidden.
        return "float32" if (self.config.device or "cpu").startswith("cpu") and not cuda_visible() else "auto"

    def identity(self) -> str:
        return json.dumps(
            {
                "backend": self.name,
                "weights": weights_hash(self.path),
                "dtype": self._dtype(),
                "pooling": _pooling(self.path),
                "normalize": self.config.normalize,
                "max_length": self.config.max_length,
            },
            sort_keys=True,
        )

    def _load(self):
        if self._model is None:
            quiet_hf()
            from sentence_transformers import SentenceTransformer

            device = self.device
            kwargs = {}
            dtype = self.config.dtype or ("float16" if device.startswith("cuda") else "float32")
            import torch

            kwargs["model_kwargs"] = {"dtype": getattr(torch, dtype)}
            self._model = SentenceTransformer(str(self.path), device=device, local_files_only=True, **kwargs)
            self._model.max_seq_length = self.config.max_length
        return self._model

    def embed(self, texts, *, progress=None):
        if not texts:
            return np.zeros((0, self.dimension()), dtype=np.float32)
        model = self._load()
        bs = self.config.batch_size
        out = []
        for i in range(0, len(texts), bs):
            batch = texts[i : i + bs]
            vecs = model.encode(
                batch,
                batch_size=bs,
                normalize_embeddings=self.config.normalize,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            out.append(np.asarray(vecs, dtype=np.float32))
            if progress is not None:
                progress(len(batch))
        return np.ascontiguousarray(np.concatenate(out))

    def dimension(self) -> int:
        return int(self._load().get_sentence_embedding_dimension())

    def close(self):
        self._model = None

