"""Which study a night continues: identity (search space, objectives, dataset), its gold, storage, splits."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from evolve.datasets import Dataset
from evolve.errors import ConfigError
from evolve.gold import GoldInfo, GoldSpec
from evolve.search_space import SearchSpace
from evolve.splits import QuerySplits, make_splits
from evolve.study._options import ATTR, LATENCY, StudyOptions
from evolve.study._sampling import make_pruner, make_sampler

log = logging.getLogger("evolve.study")

__all__ = [
    "study_identity",
    "find_study",
    "open_study",
    "current_trials",
    "comparable_trials",
    "check_compatible",
    "gold_spec",
    "load_dataset_with_gold",
    "load_study_data",
    "load_study_dataset",
    "dataset_spec",
    "study_splits",
    "prepare_study",
]


def study_identity(space: SearchSpace, objectives: tuple[str, ...], *, dataset: str, subset: int | None = None
                   ) -> dict[str, Any]:
    """What makes a study: its search space, objectives and dataset (the stored ``--dataset`` string and
    ``--subset``), and, when an objective is ``context_recall@T``, the ``answer:`` settings it counts with
    (``answer.tokenizer``, ``max_passages``, ``prompt_version``: another tokenizer is another study). The gold is not part of it: gold that grows (or is reviewed) continues the study, and each trial
    records the tune gold it was scored on (``evolve.gold_fingerprint``), so only trials on the same gold compare."""
    identity = {
        "search_space_hash": space.hash(),
        "objectives": ",".join(objectives),
        "dataset": dataset,
        "subset": subset,
    }
    from evolve.answer.metrics._context import context_metric_budget, context_settings

    if any(context_metric_budget(o) is not None for o in objectives):
        tuned = sorted(k for k in space.params if k.startswith("answer."))
        if tuned:
            raise ConfigError(f"objective context_recall counts tokens with the answer: section: expected the search "
                              f"space to leave it fixed, got params {', '.join(tuned)}")
        # the objective counts with these: trials scored under another tokenizer, passage cap or prompt never compare
        identity["answer_context"] = context_settings(space.start_config().answer)
    return identity


def directions(objectives) -> list[str]:
    return ["minimize" if o == LATENCY else "maximize" for o in objectives]


def _identity_hash(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]


def find_study(storage, name: str, identity: dict[str, Any], *, continue_stale: bool, warn: bool = True) -> str | None:
    """The existing study a night with ``identity`` continues: ``name`` when its identity matches (or with
    ``continue_stale``), else ``name-<identity hash>`` when that exists; None when neither does."""
    names = {s.study_name for s in storage.get_all_studies()}
    short = _identity_hash(identity)
    for n in (name, f"{name}-{short}"):
        if n not in names:
            continue
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(n))
        if all(attrs.get(ATTR + k) == v for k, v in identity.items()):
            return n
        if n == name and continue_stale:
            if attrs.get(ATTR + "objectives") != identity["objectives"]:
                raise ConfigError(
                    f"study '{n}' optimises {attrs.get(ATTR + 'objectives')}, not {identity['objectives']}: "
                    "objectives cannot change within a study"
                )
            if "answer_context" in identity and attrs.get(ATTR + "answer_context") != identity["answer_context"]:
                raise ConfigError(
                    f"study '{n}' scored context_recall with answer settings {attrs.get(ATTR + 'answer_context')}, "
                    f"not {identity['answer_context']}: trials counted with another tokenizer never compare "
                    "(--continue-stale cannot join them)"
                )
            if warn:
                log.warning("continuing study '%s' although its search space or dataset changed (--continue-stale)", n)
            return n
        if n == name and warn:
            log.warning("study '%s' was made for another search space, objectives, dataset or answer settings; "
                        "using '%s-%s'", n, name, short)
    return None


def open_study(storage, name: str, identity: dict[str, Any], *, create_attrs: dict[str, Any], continue_stale: bool,
               objectives: tuple[str, ...], sampler=None, pruner=None, create: bool = True):
    """Load the study called ``name`` when its identity matches (or with ``continue_stale``); otherwise use
    ``name-<identity hash>``, creating it when missing."""

    import optuna

    found = find_study(storage, name, identity, continue_stale=continue_stale)
    if found is not None:
        study = optuna.load_study(study_name=found, storage=storage, sampler=sampler, pruner=pruner)
        for k in ("dataset", "subset"):  # --continue-stale onto a moved dataset: later commands follow it
            if study.user_attrs.get(ATTR + k) != identity[k]:
                study.set_user_attr(ATTR + k, identity[k])
        return study, False
    if not create:
        from evolve.errors import StorageError

        raise StorageError(f"no study '{name}' matches this search space and dataset: expected one made by `evolve run`")
    names = {s.study_name for s in storage.get_all_studies()}
    target = name if name not in names else f"{name}-{_identity_hash(identity)}"
    study = optuna.create_study(study_name=target, storage=storage, directions=directions(objectives),
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    if not study.user_attrs.get(ATTR + "search_space_hash"):
        for k, v in {**identity, **create_attrs}.items():
            study.set_user_attr(ATTR + k, v)
    return study, True


def comparable_trials(study, corpus_fingerprint: str | None, gold_fingerprint: str | None, states=None):
    """Trials scored on this corpus and this tune gold (None: any). A trial from before gold fingerprints counts
    as scored on the study's ``legacy_gold_fingerprint`` (its stored tune split when hashed roles came)."""
    trials = study.get_trials(deepcopy=False, states=states)
    if corpus_fingerprint is not None:
        trials = [t for t in trials if t.user_attrs.get(ATTR + "corpus_fingerprint") == corpus_fingerprint]
    if gold_fingerprint is not None:
        legacy = study.user_attrs.get(ATTR + "legacy_gold_fingerprint")
        trials = [t for t in trials if t.user_attrs.get(ATTR + "gold_fingerprint", legacy) == gold_fingerprint]
    return trials


def current_trials(study, corpus_fingerprint: str | None, states=None):
    """Trials on the current corpus, whatever their gold (all corpora when ``corpus_fingerprint`` is None)."""
    return comparable_trials(study, corpus_fingerprint, None, states)


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


def gold_spec(opts: StudyOptions) -> GoldSpec:
    """The gold a night reads: ``--gold`` when given, else the gold stored with the study it continues."""
    if opts.gold is not None:
        return GoldSpec.parse(opts.gold, opts.gold_mode)
    stored = _stored_gold(opts)
    return GoldSpec.parse(stored.folders, opts.gold_mode or stored.mode)


def _stored_gold(opts: StudyOptions) -> GoldSpec:
    from evolve.storage import open_storage

    url = opts.storage_url or opts.workspace.default_storage
    if url == opts.workspace.default_storage and not (opts.workspace.path / "optuna.db").exists():
        return GoldSpec()
    storage = open_storage(url)
    identity = study_identity(opts.space, opts.objectives, dataset=dataset_spec(opts.dataset_spec), subset=opts.subset)
    name = find_study(storage, opts.study_name, identity, continue_stale=opts.continue_stale, warn=False)
    if name is None:
        return GoldSpec()
    attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(name))
    return GoldSpec.from_dict(attrs.get(ATTR + "gold"))


def load_dataset_with_gold(spec: str, gold: GoldSpec, *, subset: int | None = None, strict: bool = False
                           ) -> tuple[Dataset, GoldInfo]:
    """The dataset ``spec`` with ``gold`` applied (:func:`evolve.gold.apply_gold`), then cut to ``subset``
    documents (gold first: a subset keeps every judged document, gold's too). Gold warnings are logged."""
    from evolve.datasets import load_dataset
    from evolve.gold import apply_gold

    ds = load_dataset(spec, strict=strict)
    ds, info = apply_gold(ds, gold, strict=strict)
    for w in info.warnings:
        log.warning("%s", w)
    if subset:
        ds = ds.subset(subset, None)
    return ds, info


def load_study_data(opts: StudyOptions) -> tuple[Dataset, GoldInfo]:
    """The night's dataset with its gold (``--gold``, or the study's stored gold)."""
    return load_dataset_with_gold(opts.dataset_spec, gold_spec(opts), subset=opts.subset, strict=opts.strict)


def load_study_dataset(opts: StudyOptions) -> Dataset:
    return load_study_data(opts)[0]


def dataset_spec(spec: str) -> str:
    from evolve.datasets import BUNDLED

    return spec if spec in BUNDLED else str(Path(spec).expanduser().absolute())


def study_splits(study, dataset: Dataset, gold: GoldInfo | None = None, *, split_seed: int | None = None,
                 holdout_fraction: float | None = None, prefer_reviewed: bool | None = None) -> QuerySplits:
    """The query roles of ``dataset`` in ``study``: every text the study gave a role before keeps it, new ones come
    by hash (:mod:`evolve.splits`). Seed and fraction are the study's (the arguments serve a new study)."""
    attrs = study.user_attrs
    stored = attrs.get(ATTR + "splits")
    recorded = QuerySplits.from_dict(stored) if stored else None
    seed = recorded.seed if recorded else int(attrs.get(ATTR + "split_seed", split_seed or 0))
    fraction = recorded.holdout_fraction if recorded else (holdout_fraction or 0.3)
    if prefer_reviewed is None:
        prefer_reviewed = bool(attrs.get(ATTR + "holdout_prefer_reviewed", False))
    return make_splits(dataset, seed, fraction, recorded=recorded, reviewed=gold.reviewed if gold else (),
                       prefer_reviewed=prefer_reviewed)


def prepare_study(opts: StudyOptions, dataset: Dataset, *, gold: GoldInfo | None = None, create: bool = True,
                  failed_trial_callback=None):
    """Storage, study (identity-checked) and query splits. Unless this is a worker, the study stores the gold
    specs and the splits (every role it ever gave), so later nights and commands see the same."""
    from evolve.storage import open_storage

    storage = open_storage(opts.storage_url or opts.workspace.default_storage,
                           heartbeat_interval=opts.heartbeat_interval, grace_period=opts.grace_period,
                           failed_trial_callback=failed_trial_callback)
    identity = study_identity(opts.space, opts.objectives, dataset=dataset_spec(opts.dataset_spec), subset=opts.subset)
    create_attrs = {
        "split_seed": opts.split_seed,
        "search_space": opts.space.source,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    study, created = open_study(storage, opts.study_name, identity, create_attrs=create_attrs,
                                continue_stale=opts.continue_stale, objectives=opts.objectives,
                                sampler=make_sampler(opts.seed), pruner=make_pruner(opts), create=create)
    if opts.continue_stale:
        check_compatible(study, opts.space)
    attrs = study.user_attrs
    stored = attrs.get(ATTR + "splits")
    writer = not opts.worker
    if writer and stored and ATTR + "legacy_gold_fingerprint" not in attrs and study.get_trials(deepcopy=False):
        old = QuerySplits.from_dict(stored)
        if old.scheme == "seeded":  # a study from before hashed roles: its trials were scored on this tune split
            study.set_user_attr(ATTR + "legacy_gold_fingerprint", old.fingerprint(dataset, "tune"))
    prefer = opts.holdout_prefer_reviewed if writer else None
    splits = study_splits(study, dataset, gold, split_seed=opts.split_seed, holdout_fraction=opts.holdout_fraction,
                          prefer_reviewed=prefer)
    if writer:
        updates = {"splits": splits.to_dict(), "holdout_prefer_reviewed": bool(opts.holdout_prefer_reviewed)}
        if gold is not None:
            updates["gold"] = gold.spec.to_dict()
        for k, v in updates.items():
            if attrs.get(ATTR + k) != v:
                study.set_user_attr(ATTR + k, v)
    return storage, study, splits
