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
        """``embedding.device``, else ``cuda`` when a GPU is visible (judged without torch), else ``cpu``. The
        identity and the loaded model use this one answer, so a key always names the dtype the vectors had."""
        if self.config.device:
            return self.config.device
        return "cuda" if cuda_visible() else "cpu"

    def _dtype(self) -> str:
        """``embedding.dtype``, else float16 on a GPU and float32 on a CPU: the dtype the vectors come out in."""
        if self.config.dtype:
            return self.config.dtype
        return "float16" if self.device.startswith("cuda") else "float32"

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
            dtype = self._dtype()
            import torch

            if device.startswith("cuda") and not torch.cuda.is_available():
                from evolve.errors import ConfigError

                raise ConfigError(
                    "embedding.device: a GPU looks visible (CUDA_VISIBLE_DEVICES or /dev/nvidia0) but torch sees no "
                    "CUDA; expected embedding.device: cpu, or CUDA_VISIBLE_DEVICES='' to run on the CPU"
                )
            kwargs["model_kwargs"] = {"dtype": getattr(torch, dtype)}
            self._model = SentenceTransformer(str(self.path), device=device, local_files_only=True, **kwargs)
            self._model.max_seq_length = self.config.max_length
        return self._model

    def embed(self, texts, *, kind="document", progress=None):
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

