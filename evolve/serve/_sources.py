"""Where ``evolve serve`` takes its corpus, its champion and its challenger from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from evolve.errors import ConfigError

__all__ = ["CorpusSource", "ChampionFile", "config_version", "trial_config"]


def config_version(config_fingerprint: str, corpus_fingerprint: str) -> str:
    """What a response answers as: a short hash of the config fingerprint and the corpus fingerprint."""
    return hashlib.sha256(f"{config_fingerprint}:{corpus_fingerprint}".encode()).hexdigest()[:12]


@dataclass
class CorpusSource:
    """How to (re)load the served dataset: a bundled name or path, optionally the study's ``--subset``."""

    spec: str
    subset: int | None
    label: str
    study: str | None = None

    def load(self):
        from evolve.datasets import load_dataset

        ds = load_dataset(self.spec)
        return ds.subset(int(self.subset), None) if self.subset else ds


def trial_config(st, number: int):
    """The config trial ``number`` of study ``st`` ran (:func:`evolve.trials.trial_config`), for ``--challenger``."""
    from evolve.trials import trial_config as config_of_trial

    frozen = next((t for t in st.get_trials(deepcopy=False) if t.number == number), None)
    if frozen is None:
        raise ConfigError(f"--challenger {number}: no such trial in study '{st.study_name}'")
    cfg = config_of_trial(st, frozen)
    if cfg is None:
        raise ConfigError(f"--challenger {number}: trial {number} recorded no config (state {frozen.state.name})")
    return cfg


@dataclass
class ChampionFile:
    """The workspace champion (``champion.yaml``, else the shipped default) and a fingerprint of the file's
    content, so a promotion or a rollback is seen even when the file's timestamp is not. ``overrides``
    (``evolve serve --set KEY=VALUE``) apply to every champion loaded, a promoted one too."""

    workspace: object
    overrides: tuple[str, ...] = ()

    def fingerprint(self) -> str:
        p = self.workspace.champion_path
        try:
            return hashlib.sha256(p.read_bytes()).hexdigest()
        except FileNotFoundError:
            return "default"

    def load(self) -> tuple[object, str, str | None]:
        """(config, where it came from, when it was promoted or rolled back; None for the shipped default)."""
        from evolve.promote import current_champion, history

        cfg, source = current_champion(self.workspace)
        if self.overrides:
            from evolve.config import apply_overrides

            cfg = apply_overrides(cfg, list(self.overrides))
            source += " with --set " + ", ".join(o.split("=", 1)[0].strip() for o in self.overrides)  # keys only
        records = history(self.workspace)
        when = records[-1].get("time") if records and self.workspace.champion_path.exists() else None
        return cfg, source, when

