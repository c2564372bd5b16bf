"""Answer correctness against reference answers: exact match and F1 as the official reading-comprehension
scripts compute them, one prediction against a list of references (the maximum over references, as both do).

- English and everything not Korean: the official SQuAD v1.1 evaluation (``evaluate-v1.1.py``,
  https://rajpurkar.github.io/SQuAD-explorer/): ``normalize_answer`` lower-cases, removes punctuation
  (``string.punctuation``), the articles ``a``/``an``/``the`` and extra whitespace; F1 is over whitespace tokens.
- Korean: the official KorQuAD 1.0 evaluation (``evaluate-v1.0.py``, https://korquad.github.io/KorQuad%201.0/,
  "KorQuAD v1.0에 대한 공식 평가 스크립트", itself based on SQuAD v1.1's): its ``normalize_answer`` first turns
  ``' " 《 》 < > 〈 〉 ( ) ‘ ’`` into spaces, then lower-cases, removes ``string.punctuation`` and collapses
  whitespace (no article removal); its F1 is over **characters**: the normalised tokens are split into their
  characters (whitespace dropped) and the two character multisets are compared.

Both return 0 F1 when nothing is shared (a prediction that normalises to nothing included), as the scripts do.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

__all__ = [
    "answer_em_f1",
    "is_korean_answer",
    "korquad_em",
    "korquad_f1",
    "korquad_normalize",
    "normalize_for",
    "squad_em",
    "squad_f1",
    "squad_normalize",
    "uses_korquad",
]

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
#: KorQuAD 1.0's remove_(): these become spaces before anything else
_KORQUAD_SYMBOLS = re.compile("['\"《》<>〈〉()‘’]")


def squad_normalize(text: str) -> str:
    """SQuAD v1.1 ``normalize_answer``: lower, remove punctuation, remove articles, fix whitespace (that order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def korquad_normalize(text: str) -> str:
    """KorQuAD 1.0 ``normalize_answer``: symbols to spaces, lower, remove punctuation, fix whitespace."""
    text = _KORQUAD_SYMBOLS.sub(" ", text).lower()
    return " ".join("".join(ch for ch in text if ch not in _PUNCT).split())


def _f1(pred: list[str], ref: list[str]) -> float:
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def _max_over(refs: Sequence[str], score: Callable[[str], float]) -> float:
    if not refs:
        raise ValueError("expected at least one reference answer, got none")
    return max(score(r) for r in refs)


def squad_em(pred: str, refs: Sequence[str]) -> float:
    """1.0 when ``pred`` equals a reference after SQuAD v1.1 normalisation, else 0.0."""
    p = squad_normalize(pred)
    return _max_over(refs, lambda r: float(p == squad_normalize(r)))


def squad_f1(pred: str, refs: Sequence[str]) -> float:
    """SQuAD v1.1 token F1, the best over ``refs``."""
    p = squad_normalize(pred).split()
    return _max_over(refs, lambda r: _f1(p, squad_normalize(r).split()))


def korquad_em(pred: str, refs: Sequence[str]) -> float:
    """1.0 when ``pred`` equals a reference after KorQuAD 1.0 normalisation, else 0.0."""
    p = korquad_normalize(pred)
    return _max_over(refs, lambda r: float(p == korquad_normalize(r)))


def _chars(text: str) -> list[str]:
    return [ch for tok in korquad_normalize(text).split() for ch in tok]


def korquad_f1(pred: str, refs: Sequence[str]) -> float:
    """KorQuAD 1.0 character F1, the best over ``refs``."""
    p = _chars(pred)
    return _max_over(refs, lambda r: _f1(p, _chars(r)))


def is_korean_answer(references: Sequence[str]) -> bool:
    """Whether the references are Korean, by the Hangul-share rule of :mod:`evolve.answer._language` (at least
    30 % of the letters of all references together are Hangul). The references decide, not the prediction: a
    model that answers in the wrong language is scored by the gold's rules."""
    from evolve.answer._language import question_language

    return question_language(" ".join(references)) == "ko"


def uses_korquad(references: Sequence[str], language: str | None = None) -> bool:
    """Whether KorQuAD 1.0's rules apply: the question is Korean (``language == "ko"``, the Hangul-share rule
    applied to the question), or the references are Korean (the only rule when no question language is given). The question decides
    first because KorQuAD's official script scores every question of the set with its character F1, also those
    whose answer has no Hangul ("USCF", "1989"): by the references alone, "1989년" against "1989" would score
    SQuAD's token F1 of 0 instead of KorQuAD's 8/9."""
    return language == "ko" or is_korean_answer(references)


def normalize_for(references: Sequence[str], language: str | None = None) -> Callable[[str], str]:
    """The normalisation the references are scored under (:func:`uses_korquad`): KorQuAD 1.0's, else SQuAD v1.1's."""
    return korquad_normalize if uses_korquad(references, language) else squad_normalize


def answer_em_f1(prediction: str, references: list[str], language: str | None = None) -> tuple[float, float]:
    """(EM, F1) of ``prediction``: KorQuAD 1.0 when the question is Korean (``language``, the question's language
    by the Hangul-share rule) or the references are (:func:`uses_korquad`), SQuAD v1.1 otherwise. Empty
    ``references`` raise ValueError."""
    if not references:
        raise ValueError("expected at least one reference answer, got none")
    if uses_korquad(references, language):
        return korquad_em(prediction, references), korquad_f1(prediction, references)
    return squad_em(prediction, references), squad_f1(prediction, references)
