"""Which study a night continues: identity (search space, gold, objectives), storage, splits."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from evolve.datasets import Dataset
from evolve.errors import ConfigError
from evolve.search_space import SearchSpace
from evolve.splits import QuerySplits, make_splits
from evolve.study._options import ATTR, LATENCY, StudyOptions
from evolve.study._sampling import make_pruner, make_sampler

log = logging.getLogger("evolve.study")

__all__ = [
    "study_identity",
    "open_study",
    "current_trials",
    "check_compatible",
    "load_study_dataset",
    "dataset_spec",
    "prepare_study",
]


def study_identity(space: SearchSpace, dataset: Dataset, objectives: tuple[str, ...]) -> dict[str, str]:
    return {
        "search_space_hash": space.hash(),
        "qrels_fingerprint": dataset.qrels_fingerprint(),
        "objectives": ",".join(objectives),
    }


def directions(objectives) -> list[str]:
    return ["minimize" if o == LATENCY else "maximize" for o in objectives]


def open_study(storage, name: str, identity: dict[str, str], *, create_attrs: dict[str, Any], continue_stale: bool,
               objectives: tuple[str, ...], sampler=None, pruner=None, create: bool = True):
    """Load the study called ``name`` when its identity matches (or with ``continue_stale``); otherwise use
    ``name-<identity hash>``, creating it when missing."""

    import optuna

    def load(n):
        return optuna.load_study(study_name=n, storage=storage, sampler=sampler, pruner=pruner)

    names = {s.study_name for s in storage.get_all_studies()}
    candidates = [name]
    short = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    candidates.append(f"{name}-{short}")
    for n in candidates:
        if n not in names:
            continue
        study = load(n)
        attrs = study.user_attrs
        same = all(attrs.get(ATTR + k) == v for k, v in identity.items())
        if same:
            return study, False
        if n == name and continue_stale:
            if attrs.get(ATTR + "objectives") != identity["objectives"]:
                raise ConfigError(
                    f"study '{n}' optimises {attrs.get(ATTR + 'objectives')}, not {identity['objectives']}: "
                    "objectives cannot change within a study"
                )
            log.warning("continuing study '%s' although its search space or gold queries changed (--continue-stale)", n)
            return study, False
        if n == name:
            log.warning("study '%s' was made for another search space or other gold queries; using '%s-%s'", n, name, short)
    if not create:
        from evolve.errors import StorageError

        raise StorageError(f"no study '{name}' matches this search space and dataset: expected one made by `evolve run`")
    target = name if name not in names else f"{name}-{short}"
    study = optuna.create_study(study_name=target, storage=storage, directions=directions(objectives),
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    if not study.user_attrs.get(ATTR + "search_space_hash"):
        for k, v in {**identity, **create_attrs}.items():
            study.set_user_attr(ATTR + k, v)
    return study, True


def current_trials(study, corpus_fingerprint: str | None, states=None):
    """Trials on the current corpus (all corpora when ``corpus_fingerprint`` is None)."""
    trials = study.get_trials(deepcopy=False, states=states)
    if corpus_fingerprint is None:
        return trials
    return [t for t in trials if t.user_attrs.get(ATTR + "corpus_fingerprint") == corpus_fingerprint]


def check_compatible(study, space: SearchSpace) -> None:
    """Optuna cannot continue a study whose categorical choices (or a param's kind) changed: say so in one line."""
    seen = {}
    for t in study.get_trials(deepcopy=False):
        seen.update(t.distributions)
    for name, spec in space.params.items():
        old = seen.get(name)
        if old is None:
            continue
        kind = type(old).__name__
        new_kind = {"categorical": "CategoricalDistribution", "int": "IntDistribution", "float": "FloatDistribution"}[spec.kind]
        changed = kind != new_kind or (spec.kind == "categorical" and tuple(old.choices) != tuple(spec.choices))
        if changed:
            raise ConfigError(
                f"--continue-stale: '{name}' changed its {'choices' if kind == new_kind else 'kind'} "
                f"({getattr(old, 'choices', kind)} -> {spec.choices if spec.kind == 'categorical' else spec.kind}), "
                f"which study '{study.study_name}' cannot take; drop --continue-stale to start a new study"
            )


def load_study_dataset(opts: StudyOptions) -> Dataset:
    from evolve.datasets import load_dataset

    ds = load_dataset(opts.dataset_spec, strict=opts.strict)
    if opts.subset:
        ds = ds.subset(opts.subset, None)
    return ds


def dataset_spec(spec: str) -> str:
    from evolve.datasets import BUNDLED

    return spec if spec in BUNDLED else str(Path(spec).expanduser().absolute())


def prepare_study(opts: StudyOptions, dataset: Dataset, *, create: bool = True, failed_trial_callback=None):
    """Storage, study (identity-checked) and query splits."""
    from evolve.storage import open_storage

    storage = open_storage(opts.storage_url or opts.workspace.default_storage,
                           heartbeat_interval=opts.heartbeat_interval, grace_period=opts.grace_period,
                           failed_trial_callback=failed_trial_callback)
    identity = study_identity(opts.space, dataset, opts.objectives)
    splits = make_splits(dataset, opts.split_seed, opts.holdout_fraction)
    create_attrs = {
        "dataset": dataset_spec(opts.dataset_spec),
        "subset": opts.subset,
        "split_seed": opts.split_seed,
        "splits": splits.to_dict(),
        "search_space": opts.space.source,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    study, created = open_study(storage, opts.study_name, identity, create_attrs=create_attrs,
                                continue_stale=opts.continue_stale, objectives=opts.objectives,
                                sampler=make_sampler(opts.seed), pruner=make_pruner(opts), create=create)
    if opts.continue_stale:
        check_compatible(study, opts.space)
    stored = study.user_attrs.get(ATTR + "splits")
    if stored:
        splits = QuerySplits.from_dict(stored)  # the split fixed when the study was created
    return storage, study, splits
