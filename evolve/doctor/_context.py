"""What the checks look at: the night's configs (the champion or ``--config``, and the search space's choices),
the stores, the endpoints, and the GPUs (probed once, on first use)."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

__all__ = ["DoctorContext", "EngineNeed", "LLMEndpoint"]

#: search-space params that change which endpoints or engines a night uses
_RELEVANT = ("embedding.", "rerank.", "sparse.tokenizer")
_MAX_VARIANTS = 256


@dataclass(frozen=True)
class LLMEndpoint:
    """A chat endpoint a night or the server uses: ``gold`` (``--llm-url``) or ``answer`` (the config's ``answer:``)."""

    role: str
    base_url: str
    model: str
    api_key_env: str | None = None


@dataclass
class EngineNeed:
    """One in-process vLLM engine the night will start, keyed as evolve's engine pool keys it."""

    role: str  # "embedding" or "rerank"
    model: str
    dtype: str
    max_model_len: int | None
    device: int | None
    fraction: float
    users: list[str] = field(default_factory=list)  # config labels

    @property
    def key(self) -> tuple:
        return (self.model, self.dtype, self.max_model_len, self.device)

    def describe(self) -> str:
        dev = f", GPU {self.device}" if self.device is not None else ""
        return f"{self.role} engine {self.model} ({self.dtype}{dev}) at {self.fraction:g}"


class DoctorContext:
    """Everything a check may look at. ``configs`` maps a label (``champion``, ``--config FILE``, ``search space
    start``) to a :class:`~evolve.config.PipelineConfig`; ``space`` adds the variants its choices allow."""

    def __init__(self, workspace, configs: dict[str, Any], *, space=None, storage_url: str | None = None,
                 tracking_uri: str | None = None, cache_url: str | None = None, feedback_url: str | None = None,
                 llms: tuple[LLMEndpoint, ...] = (), deep: bool = False, timeout: float = 10.0,
                 gpu_source: str = "auto", env: dict[str, str] | None = None, engines_running: bool = False):
        self.workspace = workspace
        self.configs = dict(configs)
        self.space = space
        self.storage_url = storage_url or workspace.default_storage
        self.tracking_uri = tracking_uri or workspace.default_tracking_uri
        self.cache_url = cache_url or workspace.cache_url
        self.feedback_url = feedback_url or os.environ.get("EVOLVE_FEEDBACK_URL")
        self.llms = tuple(llms)
        self.deep = deep
        self.timeout = float(timeout)
        self.gpu_source = gpu_source
        self.env = os.environ if env is None else env
        #: the configs' engines already run in this process (``evolve serve``): their memory is in use, not needed
        self.engines_running = engines_running

    # ------------------------------------------------------------------ configs

    @cached_property
    def night_configs(self) -> list[tuple[str, Any]]:
        """(label, config) for every config given, plus each combination of the search space's choices for
        embedding, rerank and tokenizer fields (ranges at their upper end); combinations the config refuses are
        left out."""
        out = list(self.configs.items())
        if self.space is None:
            return out
        out.append(("search space start", self.space.start_config()))
        names = [n for n in self.space.params if n.startswith(_RELEVANT)]
        axes = []
        for n in names:
            spec = self.space.params[n]
            if spec.kind == "categorical":
                axes.append([(n, v) for v in spec.choices])
            else:
                axes.append([(n, (spec.int_ or spec.float_)[1])])
        from evolve.errors import EvolveError

        for combo in itertools.islice(itertools.product(*axes), _MAX_VARIANTS) if axes else ():
            try:
                cfg = self.space.config_for(dict(combo))
            except EvolveError:
                continue
            out.append(("search space: " + ", ".join(f"{k}={v}" for k, v in combo), cfg))
        return out

    def distinct(self, getter) -> dict[Any, list[str]]:
        """Distinct values of ``getter(config)`` over :attr:`night_configs` (None left out), with their labels."""
        seen: dict[Any, list[str]] = {}
        for label, cfg in self.night_configs:
            v = getter(cfg)
            if v is not None:
                seen.setdefault(v, []).append(label)
        return seen

    @cached_property
    def engines(self) -> list[EngineNeed]:
        """In-process vLLM engines the night starts: one per (model, dtype, max_model_len, device), as
        :func:`evolve.embedders._vllm.get_engine` pools them; a shared engine counts once at its largest fraction."""
        needs: dict[tuple, EngineNeed] = {}

        def add(need: EngineNeed, label: str):
            have = needs.get(need.key)
            if have is None:
                needs[need.key] = need
                have = need
            have.fraction = max(have.fraction, need.fraction)
            if label not in have.users:
                have.users.append(label)

        for label, cfg in self.night_configs:
            e = cfg.embedding
            if e.backend == "vllm":
                for dev in (list(dict.fromkeys(e.devices)) if e.devices else [None]):
                    add(EngineNeed("embedding", e.model, e.dtype or "float16", e.max_model_len, dev,
                                   e.gpu_memory_utilization), label)
            r = cfg.rerank
            if r.transport == "vllm":
                add(EngineNeed("rerank", r.model, r.dtype or "float16", None, None, r.gpu_memory_utilization), label)
        return list(needs.values())

    # ------------------------------------------------------------------ GPUs

    @cached_property
    def gpu(self):
        """``(GpuFacts, "")`` or ``(None, why there is no GPU)``, probed once."""
        from evolve.doctor._gpu import probe_gpus

        return probe_gpus(self.gpu_source)
