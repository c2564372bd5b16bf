"""The in-memory retrieval dataset: corpus, queries and qrels per split."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass, field

__all__ = ["Document", "Dataset", "nfc", "clean_answers"]


def nfc(text: str) -> str:
    """NFC-normalise (Korean exported on macOS often arrives as NFD)."""
    return unicodedata.normalize("NFC", text)


def clean_answers(texts) -> list[str]:
    """Reference answer strings as a dataset keeps them: NFC, stripped, empty ones dropped, duplicates dropped,
    first-seen order kept."""
    out: list[str] = []
    for text in texts:
        t = nfc(str(text)).strip()
        if t and t not in out:
            out.append(t)
    return out


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
    split named ``test``; a corpus alone (a Notion export, tickets) has none (``{}``) and gets its gold from
    ``--gold`` (:meth:`require_gold`). ``warnings`` holds one line per kind of dropped input (empty documents, dangling qrels).
    ``answers`` maps a query id to its reference answer strings (SQuAD-style spans, a gold folder's ``answers``);
    it is never part of the corpus fingerprint, and enters the gold fingerprint only when a query has one.
    """

    name: str
    source: str
    corpus: dict[str, Document]
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]]
    warnings: list[str] = field(default_factory=list)
    #: query id -> reference answer strings (NFC, deduplicated, order kept); empty when the gold has none
    answers: dict[str, list[str]] = field(default_factory=dict)
    #: (the corpus dict, its length, its fingerprint): computed once per corpus, not once per trial
    _corpus_fp: tuple | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def splits(self) -> list[str]:
        return sorted(self.qrels)

    def require_gold(self) -> None:
        """Raise the one-line error of a corpus-only dataset (a Notion export, tickets) wherever judged queries
        are needed: a split to score, queries to split into tune and holdout."""
        if not self.qrels:
            from evolve.errors import DatasetError

            raise DatasetError(f"dataset {self.name} has no judged queries: expected --gold DIR "
                               "(see `evolve gold generate`)", path=self.source)

    def split_qrels(self, split: str) -> dict[str, dict[str, int]]:
        from evolve.errors import DatasetError, did_you_mean

        self.require_gold()
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
        """Fingerprint of the gold queries: their texts and judgements (all splits), and the reference answers of
        judged queries when any has one (a score on answers, ``context_recall``, must never compare trials under
        other answers; gold without answers keeps the fingerprint it always had)."""
        used = {q for split in self.qrels.values() for q in split}
        blob = {"queries": sorted((q, self.queries[q]) for q in used if q in self.queries), "qrels": self.qrels}
        answers = {q: list(a) for q, a in self.answers.items() if q in used and a}
        if answers:
            blob["answers"] = answers
        return _sha(blob)

    @property
    def fingerprint(self) -> str:
        """Content fingerprint (sha256) of the whole dataset: corpus, queries and qrels."""
        return _sha({"corpus": self.corpus_fingerprint(), "gold": self.qrels_fingerprint()})

    def subset(self, n_docs: int, split: str | None = None, seed: int = 0) -> Dataset:
        """A dataset of at most ``n_docs`` documents that keeps **every** judged document of every query it keeps.

        Queries of ``split`` (all splits when None) are kept whole or not at all: a query is never scored
        against part of its judgements (dropping a judged document from the corpus and from the qrels would make
        the query easier and inflate the subset's scores). When the judged documents of all those queries fit
        in ``n_docs``, every query is kept; otherwise queries are taken in a seeded random order (``seed``) and
        kept while their judged documents still fit, so fewer queries are kept, each with all its judgements,
        and ``warnings`` says how many were left out. Seeded random unjudged documents fill the rest.
        """
        import random

        from evolve.errors import DatasetError

        splits = [split] if split else self.splits
        qrels = {s: {q: dict(docs) for q, docs in self.qrels[s].items() if docs} for s in splits}
        judged = {s: {q: {d for d in docs if d in self.corpus} for q, docs in sq.items()} for s, sq in qrels.items()}
        every = sorted(set().union(*(ds for sq in judged.values() for ds in sq.values())))
        warnings: list[str] = []
        if len(every) <= n_docs:
            keep = set(every)
        else:
            order = sorted((s, q) for s, sq in qrels.items() for q in sq)
            random.Random(f"subset-queries-{seed}").shuffle(order)
            keep, kept = set(), {s: {} for s in splits}
            for s, q in order:
                need = judged[s][q] - keep
                if len(keep) + len(need) <= n_docs:
                    keep |= need
                    kept[s][q] = qrels[s][q]
            n_all, n_kept = len(order), sum(len(sq) for sq in kept.values())
            if n_kept == 0:
                least = min(len(judged[s][q]) for s, q in order)
                raise DatasetError(f"subset: expected room for the judged documents of at least one query "
                                   f"(the fewest a query has is {least}), got {n_docs} documents", path=self.source)
            qrels = kept
            warnings.append(f"subset of {n_docs} documents: kept {n_kept} of {n_all} queries whole; "
                            f"{n_all - n_kept} left out because their judged documents did not fit")
        rng = random.Random(seed)
        rest = sorted(set(self.corpus) - keep)
        rng.shuffle(rest)
        keep_ids = set(keep) | set(rest[: max(0, n_docs - len(keep))])
        corpus = {d: doc for d, doc in self.corpus.items() if d in keep_ids}
        used = {q for sq in qrels.values() for q in sq}
        queries = {q: t for q, t in self.queries.items() if q in used}
        answers = {q: a for q, a in self.answers.items() if q in used}
        return Dataset(f"{self.name}[{n_docs}]", self.source, corpus, queries, qrels, warnings, answers)
