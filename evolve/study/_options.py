"""What one night is asked to do, what it reports back, and the objectives it optimises."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from evolve.errors import ConfigError
from evolve.evaluate import PRIMARY_METRIC
from evolve.search_space import SearchSpace
from evolve.workspace import Workspace

#: prefix of every study/trial attribute evolve writes
ATTR = "evolve."
#: the latency objective (minimised); every other objective is a ranx metric (maximised)
LATENCY = "latency_ms"

__all__ = [
    "ATTR",
    "LATENCY",
    "StudyOptions",
    "NightSummary",
    "parse_objectives",
]


@dataclass
class StudyOptions:
    dataset_spec: str
    space: SearchSpace
    workspace: Workspace
    study_name: str = "evolve"
    storage_url: str | None = None
    tracking_uri: str | None = None
    n_trials: int | None = None
    timeout: float | None = None
    seed: int | None = None
    split_seed: int = 0
    holdout_fraction: float = 0.3
    objectives: tuple[str, ...] = (PRIMARY_METRIC,)
    continue_stale: bool = False
    heartbeat_interval: int = 10
    grace_period: int = 60
    prune: bool = True
    prune_batch: int = 50
    report_top: int = 3
    subset: int | None = None
    strict: bool = False
    # gold folders (--gold, absolute or relative paths; None: the study's stored gold) and how they meet the
    # dataset's own qrels (--gold-mode merge|replace; None: the stored mode, else merge)
    gold: tuple[str, ...] | None = None
    gold_mode: str | None = None
    #: new queries a person reviewed go to holdout first (see evolve.splits)
    holdout_prefer_reviewed: bool = False
    # distributed mode (evolve worker): a study-wide budget and retries of trials whose worker died
    study_total: int | None = None
    deadline: float | None = None
    max_retry: int | None = None
    worker: bool = False


@dataclass
class NightSummary:
    study_name: str
    parent_run_id: str
    n_complete: int = 0
    n_pruned: int = 0
    n_failed: int = 0
    n_repeats: int = 0
    pruned_saved_seconds: float = 0.0
    wall_seconds: float = 0.0
    best: dict | None = None
    #: trials whose report-split metrics were computed after tuning and sealed (never shown before promotion)
    sealed_report: list[int] = field(default_factory=list)
    trial_numbers: list[int] = field(default_factory=list)

    @property
    def all_failed(self) -> bool:
        return bool(self.trial_numbers) and self.n_failed == len(self.trial_numbers)


def parse_objectives(text: str | None) -> tuple[str, ...]:
    if not text:
        return (PRIMARY_METRIC,)
    names = tuple(t.strip() for t in text.split(",") if t.strip())

    for n in names:
        if n != LATENCY and not re.fullmatch(r"(ndcg|recall|mrr|map|precision|hit_rate|hits|f1|r-precision|bpref)(@\d+)?", n) \
                and not re.fullmatch(r"context_recall@[1-9]\d*", n):
            raise ConfigError(f"objective '{n}': expected a ranx metric like ndcg@10, context_recall@T (T tokens) "
                              f"or '{LATENCY}'")
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives must be distinct, got '{text}'")
    if names[0] == LATENCY:
        raise ConfigError(f"the first objective must be a quality metric, got '{LATENCY}'")
    return names
