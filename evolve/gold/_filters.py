"""Filters for LLM-written questions: each one says why a question is not fit to be gold, and is counted.

A :class:`Candidate` is one generated question with the passage it was written from. :func:`apply_filters` runs
every filter on every candidate (each filter's verdict goes into the provenance) and rejects a candidate for
the FIRST filter it fails, in the order of :data:`FILTERS`; so the rejection counts and the kept questions add
up to the number generated.

* ``malformed``: the model's reply held no readable question (after JSON repair and one retry).
* ``unanswerable``: the model said the passage answers nothing ("NONE", "I don't know", "없음", "알 수 없"...).
* ``too_short``: fewer than ``min_words`` words (English) or kiwipiepy morphemes (Korean; particles and endings
  count, so a one-word question with an ending, "휴가는요", passes: a known limit).
* ``dangling_reference``: a question that points at something it never names: it opens with a pronoun or a
  demonstrative ("this", "it", "that paper", "이것", "그것"...) or speaks of "the passage" / "이 문서".
* ``language``: not in the passage's language, by the share of Hangul among the letters (no language-ID model
  installs offline): a Korean passage wants at least 30 % Hangul, an English one at least 50 % Latin letters
  and under 30 % Hangul.
* ``overlap``: the share of the question's content words that occur in the passage (English: bm25s' stemmed,
  stopword-free tokens; Korean: kiwipiepy content morphemes: the same tokens BM25 matches) is above ``max_overlap``.
  A question that copies its passage makes BM25 look better than it is.
* ``duplicate``: word Jaccard (kiwipiepy morphemes for Korean) >= ``max_jaccard`` with a question kept before.

kiwipiepy and bm25s are imported on first use.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FILTERS",
    "Candidate",
    "FilterSettings",
    "QuestionFilter",
    "apply_filters",
    "content_overlap",
    "jaccard",
    "script_shares",
    "word_set",
]

_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Candidate:
    """A generated question and what it was written from. ``question`` is None when the reply held none."""

    question: str | None
    passage: str
    lang: str  # the passage's language: "ko" or "en"
    answer: str | None = None
    #: filter name -> {"pass": bool} and, where the filter measures one, "value"; filled by apply_filters
    verdicts: dict[str, Any] = field(default_factory=dict)
    rejected_by: str | None = None


@dataclass(frozen=True)
class FilterSettings:
    min_words: int = 3
    max_overlap: float = 0.6
    max_jaccard: float = 0.8


def script_shares(text: str) -> tuple[float, float]:
    """(Hangul share, Latin share) of the letters of ``text``; (0, 0) when it has none."""
    letters = len(_LETTER.findall(text))
    if not letters:
        return 0.0, 0.0
    return len(_HANGUL.findall(text)) / letters, len(_LATIN.findall(text)) / letters


def is_korean_text(text: str) -> bool:
    return script_shares(text)[0] >= 0.3


def _kiwi():
    from evolve.sparse._tokenizers import _get_kiwi

    return _get_kiwi()


def _morphemes(text: str) -> list[str]:
    """kiwipiepy morpheme forms of ``text``, punctuation and symbols left out (foreign words and numbers kept)."""
    out = []
    for t in _kiwi().tokenize(text):
        tag = t.tag.split("-", 1)[0]
        if tag.startswith("S") and tag not in ("SL", "SN", "SH"):
            continue
        out.append(t.form.lower())
    return out


def word_set(text: str) -> set[str]:
    """The words of ``text`` for near-duplicate detection: kiwipiepy morphemes for Korean, lower-cased word
    tokens otherwise."""
    if is_korean_text(text):
        return set(_morphemes(text))
    return set(_WORD.findall(text.lower()))


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _content_tokens(texts: list[str]) -> list[list[str]]:
    from evolve.sparse._tokenizers import tokenize

    return tokenize(texts, "auto")


def content_overlap(question: str, passage: str) -> float:
    """Share of the question's distinct content words (BM25's tokens) that also occur in the passage."""
    q, p = _content_tokens([question, passage])
    qs = set(q)
    if not qs:
        return 0.0
    return len(qs & set(p)) / len(qs)


class QuestionFilter(abc.ABC):
    """One reason a generated question is not fit to be gold.

    Contract: :meth:`check` looks at one candidate (with ``question`` set) and returns ``(passed, value)``;
    ``value`` is what goes into the provenance (a measured number, or None). A filter never raises on odd text
    and never changes the candidate. Filters that compare with earlier questions (``duplicate``) see the kept
    questions through :meth:`keep`, called for each candidate that passes every filter.
    """

    name: str = ""

    @abc.abstractmethod
    def check(self, cand: Candidate) -> tuple[bool, Any]:
        """``(passed, value)`` for ``cand``."""

    def keep(self, cand: Candidate) -> None:  # noqa: B027 - optional hook
        """``cand`` was kept (it passed every filter)."""


_UNANSWERABLE_EN = re.compile(
    r"^\W*(none|n/?a|nothing|no question|unanswerable|unknown|null)\W*$|"
    r"\b(i|we) (do not|don't|dont|can ?not|can't) (know|tell|answer|find)\b|\bdon't know\b|\bno answer\b|"
    r"\bnot (mentioned|provided|stated|specified|given|answered)\b|\bcannot be answered\b|\bcan't be answered\b|"
    r"\bno (relevant )?information\b|\bunanswerable\b",
    re.I,
)
_UNANSWERABLE_KO = re.compile(r"^\W*없음\W*$|모르겠|알 ?수 ?없|답할 ?수 ?없|답이 ?없|언급되(어 있)?지 ?않|정보가 ?없|나와 ?있지 ?않")


class Unanswerable(QuestionFilter):
    name = "unanswerable"

    def check(self, cand):
        for text in (cand.question or "", cand.answer or ""):
            if _UNANSWERABLE_EN.search(text) or _UNANSWERABLE_KO.search(text):
                return False, None
        return True, None


class TooShort(QuestionFilter):
    name = "too_short"

    def __init__(self, min_words: int):
        self.min_words = min_words

    def check(self, cand):
        q = cand.question or ""
        n = len(_morphemes(q)) if is_korean_text(q) else len(_WORD.findall(q))
        return n >= self.min_words, n


_DANGLING_START_EN = re.compile(
    r"^\W*(this|that|these|those|it|its|they|them|their|he|she|his|her)\b", re.I
)
_DANGLING_ANY_EN = re.compile(
    r"\b(this|that|above|given|following) (passage|text|excerpt|paragraph|document|article|section|snippet)\b|"
    r"\bthe (passage|excerpt|snippet|above)\b|"
    r"\b(this|that) (paper|study|article|author|research|report|ticket|page|work|experiment|trial)\b|"
    r"\bthe (paper|study|author|authors)\b|"
    r"\b(this|that|these|those|it|them)\s*[?.!]*\s*$|"
    r"\b(this|these|those) (is|are|was|were|do|does|did|mean|means|show|shows|refer|refers|work|works)\b|"
    r"\b(mentioned|described|discussed|stated) above\b|\baccording to (it|this|the passage|the text)\b",
    re.I,
)
_DANGLING_START_KO = re.compile(r"^\W*(이것|그것|저것|이거|그거|저거|이는|그는|그녀|이들|그들|이곳|그곳|여기서|거기서|이러한|그러한|이런|그런)")
_DANGLING_ANY_KO = re.compile(
    r"(?:^|[\s\W])(이|위|본|해당|다음|그) ?(문서|글|부분|내용|본문|단락|문단|논문|연구|자료|티켓|페이지)|위에서|본문에서"
)


class DanglingReference(QuestionFilter):
    name = "dangling_reference"

    def check(self, cand):
        q = cand.question or ""
        if _DANGLING_START_EN.search(q) or _DANGLING_ANY_EN.search(q):
            return False, None
        if _DANGLING_START_KO.search(q) or _DANGLING_ANY_KO.search(q):
            return False, None
        return True, None


class LanguageMismatch(QuestionFilter):
    name = "language"

    def check(self, cand):
        hangul, latin = script_shares(cand.question or "")
        if cand.lang == "ko":
            return hangul >= 0.3, round(hangul, 4)
        return latin >= 0.5 and hangul < 0.3, round(hangul, 4)


class LexicalOverlap(QuestionFilter):
    name = "overlap"

    def __init__(self, max_overlap: float):
        self.max_overlap = max_overlap

    def check(self, cand):
        value = content_overlap(cand.question or "", cand.passage)
        return value <= self.max_overlap, round(value, 4)


class NearDuplicate(QuestionFilter):
    name = "duplicate"

    def __init__(self, max_jaccard: float, existing: list[str] | None = None):
        self.max_jaccard = max_jaccard
        self._kept: list[set[str]] = [word_set(q) for q in existing or []]

    def check(self, cand):
        words = word_set(cand.question or "")
        best = max((jaccard(words, k) for k in self._kept), default=0.0)
        return best < self.max_jaccard, round(best, 4)

    def keep(self, cand):
        self._kept.append(word_set(cand.question or ""))


#: every filter, in the order a candidate is rejected by its first failure (``malformed`` comes before all)
FILTERS = ("malformed", "unanswerable", "too_short", "dangling_reference", "language", "overlap", "duplicate")


def build_filters(settings: FilterSettings, existing_questions: list[str] | None = None) -> list[QuestionFilter]:
    return [
        Unanswerable(),
        TooShort(settings.min_words),
        DanglingReference(),
        LanguageMismatch(),
        LexicalOverlap(settings.max_overlap),
        NearDuplicate(settings.max_jaccard, existing_questions),
    ]


def apply_filters(
    candidates: list[Candidate],
    settings: FilterSettings = FilterSettings(),
    *,
    existing_questions: list[str] | None = None,
) -> dict[str, int]:
    """Run every filter on every candidate (in order, so ``duplicate`` compares with the questions kept before
    it and with ``existing_questions``); set ``verdicts`` and ``rejected_by``. Returns the count of candidates
    rejected by each filter (their first failure) and ``kept``: the counts add up to ``len(candidates)``."""
    filters = build_filters(settings, existing_questions)
    counts = {name: 0 for name in FILTERS}
    counts["kept"] = 0
    for cand in candidates:
        cand.verdicts, cand.rejected_by = {}, None
        if not (cand.question or "").strip():
            cand.verdicts["malformed"] = {"pass": False}
            cand.rejected_by = "malformed"
            counts["malformed"] += 1
            continue
        cand.verdicts["malformed"] = {"pass": True}
        for f in filters:
            passed, value = f.check(cand)
            cand.verdicts[f.name] = {"pass": passed} if value is None else {"pass": passed, "value": value}
            if not passed and cand.rejected_by is None:
                cand.rejected_by = f.name
        if cand.rejected_by is None:
            for f in filters:
                f.keep(cand)
            counts["kept"] += 1
        else:
            counts[cand.rejected_by] += 1
    return counts
