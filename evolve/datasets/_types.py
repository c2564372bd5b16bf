"""The in-memory retrieval dataset: corpus, queries and qrels per split."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass, field

__all__ = ["Document", "Dataset", "nfc"]


def nfc(text: str) -> str:
    """NFC-normalise (Korean exported on macOS often arrives as NFD)."""
    return unicodedata.normalize("NFC", text)


@dataclass(frozen=True)
class Document:
    """One document. Only ``title`` and ``text`` are content (embedded, indexed, fingerprinted); ``metadata``
    (path, properties, source URL, ...) travels with it but never changes a vector or a fingerprint, so moving
    a page re-embeds nothing."""

    id: str
    title: str
    text: str
    metadata: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def full_text(self) -> str:
        """What gets embedded and indexed: title + " " + text (just the text when there is no title)."""
        return f"{self.title} {self.text}" if self.title else self.text


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


@dataclass
class Dataset:
    """A retrieval dataset.

    ``qrels`` maps split name -> query id -> doc id -> relevance. A dataset with a single qrels set has one
    split named ``test``. ``warnings`` holds one line per kind of dropped input (empty documents, dangling qrels).
    """

    name: str
    source: str
    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]]
    warnings: list[str] = field(default_factory=list)
    #: (the corpus dict, its length, its fingerprint): computed once per corpus, not once per trial
    _corpus_fp: tuple | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def splits(self) -> list[str]:
        return sorted(self.qrels)

    def split_qrels(self, split: str) -> dict[str, dict[str, int]]:
        from evolve.errors import DatasetError, did_you_mean

        if split not in self.qrels:
            raise DatasetError(
                f"unknown split '{split}': expected one of {', '.join(self.splits)}{did_you_mean(split, self.splits)}",
                path=self.source,
            )
        return self.qrels[split]

    def corpus_fingerprint(self) -> str:
        """sha256 of the corpus content (ids, titles, texts; order and metadata do not count). Computed once per
        corpus dict: a corpus is not edited in place once loaded (build a new dict or Dataset to change it; a
        replaced dict, or one whose length changed, is fingerprinted again)."""
        memo = self._corpus_fp
        if memo is not None and memo[0] is self.corpus and memo[1] == len(self.corpus):
            return memo[2]
        fp = _sha(sorted((d.id, d.title, d.text) for d in self.corpus.values()))
        self._corpus_fp = (self.corpus, len(self.corpus), fp)
        return fp

    def qrels_fingerprint(self) -> str:
        """Fingerprint of the gold queries: their texts and judgements (all splits)."""
        used = {q for split in self.qrels.values() for q in split}
        return _sha({"queries": sorted((q, self.queries[q]) for q in used if q in self.queries), "qrels": self.qrels})

    @property
    def fingerprint(self) -> str:
        """Content fingerprint (sha256) of the whole dataset: corpus, queries and qrels."""
        return _sha({"corpus": self.corpus_fingerprint(), "gold": self.qrels_fingerprint()})

    def subset(self, n_docs: int, split: str | None = None, seed: int = 0) -> Dataset:
        """A smaller dataset: every relevant doc of the kept queries plus seeded random fillers up to ``n_docs``."""
        import random

        splits = [split] if split else self.splits
        qrels = {s: dict(self.qrels[s]) for s in splits}
        relevant = sorted({d for s in qrels.values() for docs in s.values() for d in docs})
        rng = random.Random(seed)
        rest = sorted(set(self.corpus) - set(relevant))
        rng.shuffle(rest)
        keep_ids = relevant[:n_docs] + rest[: max(0, n_docs - len(relevant))]
        keep = set(keep_ids)
        corpus = {d: doc for d, doc in self.corpus.items() if d in keep}
        new_qrels = {
            s: {q: {d: r for d, r in docs.items() if d in keep} for q, docs in sq.items()} for s, sq in qrels.items()
        }
        new_qrels = {s: {q: docs for q, docs in sq.items() if docs} for s, sq in new_qrels.items()}
        used = {q for sq in new_qrels.values() for q in sq}
        queries = {q: t for q, t in self.queries.items() if q in used}
        return Dataset(f"{self.name}[{n_docs}]", self.source, corpus, queries, new_qrels, [])
