"""The search space: per config field a categorical choice or an int/float range, optionally conditional.

YAML shape::

    base: default            # a shipped config name or a path; the values not searched come from it
    fixed:                   # config fields pinned for the whole study
      embedding.model: all-MiniLM-L6-v2
    params:                  # searched, in order; a `when` may only name fields listed above it (or fixed)
      chunking.strategy: {choices: [none, tokens, sentences]}
      chunking.size: {int: [128, 256], step: 128, when: {chunking.strategy: [tokens, sentences]}}
      fusion.weight: {float: [0.1, 0.9]}
      sparse.k1: {float: [0.5, 2.0], log: true}

A field whose ``when`` does not hold is not sampled: it keeps its value from ``fixed`` or the base config.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evolve.config import PipelineConfig, apply_overrides, config_path, flatten, load_config, read_yaml
from evolve.errors import ConfigError, did_you_mean

__all__ = ["ParamSpec", "SearchSpace", "load_search_space"]

Scalar = str | int | float | bool | None
_INACTIVE = object()  # a param whose `when` does not hold: conditions on it are never satisfied


class ParamSpec(BaseModel):
    """One searched field: exactly one of ``choices``, ``int`` or ``float``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    choices: list[Scalar] | None = None
    int_: tuple[int, int] | None = Field(None, alias="int")
    float_: tuple[float, float] | None = Field(None, alias="float")
    step: float | None = None
    log: bool = False
    when: dict[str, list[Scalar]] | None = None

    @model_validator(mode="after")
    def _one_kind(self):
        kinds = [k for k in ("choices", "int_", "float_") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("expected exactly one of 'choices', 'int' or 'float'")
        if self.choices is not None and not self.choices:
            raise ValueError("expected at least one choice, got an empty list")
        rng = self.int_ or self.float_
        if rng is not None:
            low, high = rng
            if low > high:
                raise ValueError(f"expected low <= high, got [{low}, {high}]")
            if self.log and low <= 0:
                raise ValueError(f"a log range needs low > 0, got {low}")
            if self.log and self.step is not None:
                raise ValueError("expected either 'log' or 'step', got both")
        elif self.log or self.step is not None:
            raise ValueError("'log' and 'step' apply to int/float ranges only")
        return self

    @property
    def kind(self) -> str:
        return "categorical" if self.choices is not None else ("int" if self.int_ is not None else "float")

    def candidates(self) -> list[Any]:
        """Representative values used to validate the spec against the config model."""
        if self.choices is not None:
            return list(self.choices)
        low, high = self.int_ or self.float_
        return [low, high]


class _SpaceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base: str = "default"
    fixed: dict[str, Any] = {}
    params: dict[str, ParamSpec]


class SearchSpace:
    """A validated search space bound to its base config."""

    def __init__(self, spec: _SpaceFile, source: str, base: PipelineConfig):
        self.spec = spec
        self.source = source
        self.base = base

    @property
    def params(self) -> dict[str, ParamSpec]:
        return self.spec.params

    def hash(self) -> str:
        """sha256 of the canonical space (base config, fixed values and params), its ``answer`` section and
        ``answer.*`` values left out: they change no retrieval, so no study identity."""
        blob = {
            "base": self.base.retrieval_dict(),
            "fixed": {k: v for k, v in self.spec.fixed.items() if not k.startswith("answer.")},
            "params": {k: v.model_dump(by_alias=True, exclude_none=True) for k, v in self.spec.params.items()},
        }
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()

    def start_config(self) -> PipelineConfig:
        return apply_overrides(self.base, [f"{k}={json.dumps(v)}" for k, v in self.spec.fixed.items()])

    def active(self, name: str, values: dict[str, Any]) -> bool:
        spec = self.spec.params[name]
        return all(values.get(field) in allowed for field, allowed in (spec.when or {}).items())

    def sample(self, trial) -> dict[str, Any]:
        """Ask an Optuna trial for every active param; returns the sampled values."""
        start = flatten(self.start_config().to_dict())
        values: dict[str, Any] = dict(start)
        sampled: dict[str, Any] = {}
        for name, spec in self.spec.params.items():
            if not self.active(name, values):
                values[name] = _INACTIVE
                continue
            if spec.kind == "categorical":
                v = trial.suggest_categorical(name, spec.choices)
            elif spec.kind == "int":
                step = int(spec.step) if spec.step else 1
                v = trial.suggest_int(name, spec.int_[0], spec.int_[1], step=step, log=spec.log)
            else:
                v = trial.suggest_float(name, spec.float_[0], spec.float_[1], step=spec.step, log=spec.log)
            values[name] = v
            sampled[name] = v
        return sampled

    def config_for(self, params: dict[str, Any]) -> PipelineConfig:
        """The full pipeline config of a parameter set (one-line ConfigError when the combination is invalid)."""
        return apply_overrides(self.start_config(), [f"{k}={json.dumps(v)}" for k, v in params.items()])

    def params_of(self, config: PipelineConfig) -> dict[str, Any] | None:
        """The parameter set that gives ``config``, or None when the config lies outside the space."""
        flat = flatten(config.to_dict())
        values = dict(flatten(self.start_config().to_dict()))
        params: dict[str, Any] = {}
        for name, spec in self.spec.params.items():
            if not self.active(name, {**values, **params}):
                params[name] = _INACTIVE
                continue
            v = flat[name]
            if spec.kind == "categorical" and v not in spec.choices:
                return None
            if spec.kind != "categorical":
                low, high = spec.int_ or spec.float_
                if not (low <= v <= high):
                    return None
            params[name] = v
        params = {k: v for k, v in params.items() if v is not _INACTIVE}
        try:
            if self.config_for(params).fingerprint() != config.fingerprint():
                return None
        except ConfigError:
            return None
        return params


def _validate(spec: _SpaceFile, base: PipelineConfig, source: str) -> None:
    known = flatten(base.to_dict())
    seen: set[str] = set(spec.fixed)
    for name in list(spec.fixed) + list(spec.params):
        if name not in known:
            raise ConfigError(f"unknown config field '{name}' in the search space{did_you_mean(name, known)}", path=source)
    try:
        start = apply_overrides(base, [f"{k}={json.dumps(v)}" for k, v in spec.fixed.items()])
    except ConfigError as err:
        raise ConfigError(f"fixed values are invalid: {err.message}", path=source) from None
    for name, p in spec.params.items():
        for field in p.when or {}:
            if field not in known:
                raise ConfigError(f"'{name}': unknown field '{field}' in 'when'{did_you_mean(field, known)}", path=source)
            if field not in seen:
                raise ConfigError(f"'{name}': 'when' names '{field}', expected a field fixed or listed above it", path=source)
        for value in p.candidates():
            try:
                apply_overrides(start, [f"{name}={json.dumps(value)}"])
            except ConfigError as err:
                # cross-field checks (e.g. overlap < size) are judged per trial; single-field errors are the spec's
                if err.message.startswith(f"{name}:") or "unknown" in err.message:
                    raise ConfigError(f"'{name}': value {value!r} is invalid: {err.message}", path=source) from None
        seen.add(name)


def load_search_space(path: str | Path | None = None, overrides: list[str] | None = None) -> SearchSpace:
    """Read and validate a search space (default: the shipped ``configs/search_space.yaml``).

    ``overrides`` (``KEY=VALUE``, as ``--set``) are added to its fixed values (and so to its hash)."""
    p = config_path(path, "search_space.yaml")
    source = str(p)
    data = read_yaml(p, "search space")
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping with 'params', got {type(data).__name__}", path=source)
    try:
        spec = _SpaceFile.model_validate(data)
    except ValidationError as err:
        e = err.errors()[0]
        loc = ".".join(str(x) for x in e["loc"])
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            options = ["base", "fixed", "params"] if len(e["loc"]) == 1 else ["choices", "int", "float", "step", "log", "when"]
            raise ConfigError(f"unknown search-space key '{loc}'{did_you_mean(key, options)}", path=source) from None
        msg = e["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{loc}: {msg}", path=source) from None
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"expected --set KEY=VALUE, got '{item}'")
        key, raw = item.split("=", 1)
        if key.strip() in spec.params:
            raise ConfigError(f"--set {key.strip()}: this field is searched by the space; remove it from 'params' to pin it")
        spec.fixed[key.strip()] = yaml.safe_load(raw) if raw else ""
    base = load_config(spec.base)
    _validate(spec, base, source)
    return SearchSpace(spec, source, base)
