"""A study as the commands after a night see it (promote-config, status, search, serve, gold assess): its dataset
with the stored gold, its query roles, and the fingerprints that say which trials compare."""

from __future__ import annotations

from dataclasses import dataclass

from evolve.datasets import Dataset
from evolve.gold import GoldInfo, GoldSpec
from evolve.splits import QuerySplits
from evolve.study._identity import load_dataset_with_gold, study_splits
from evolve.study._options import ATTR

__all__ = ["StudyView", "view_study"]


@dataclass
class StudyView:
    study: object
    dataset: Dataset
    gold: GoldInfo
    splits: QuerySplits

    @property
    def corpus_fp(self) -> str:
        return self.dataset.corpus_fingerprint()

    @property
    def gold_fp(self) -> str:
        """The tune gold's fingerprint: trials scored on other gold do not compare with tonight's."""
        return self.splits.fingerprint(self.dataset, "tune")


def view_study(study, *, gold: list[str] | tuple[str, ...] | None = None, gold_mode: str | None = None,
               strict: bool = False) -> StudyView:
    """The study's dataset (as stored: ``--dataset`` and ``--subset``) with its stored gold, or with ``gold`` /
    ``gold_mode`` when given (read-only: nothing is written to the study)."""
    attrs = study.user_attrs
    stored = GoldSpec.from_dict(attrs.get(ATTR + "gold"))
    spec = GoldSpec.parse(gold if gold is not None else stored.folders, gold_mode or stored.mode)
    subset = attrs.get(ATTR + "subset")
    dataset, info = load_dataset_with_gold(attrs.get(ATTR + "dataset"), spec, subset=int(subset) if subset else None,
                                           strict=strict)
    return StudyView(study, dataset, info, study_splits(study, dataset, info))
