"""BM25 tokenizers: ``english``, ``korean``, ``regex`` and ``auto``.

Each tokenizer turns a list of texts into a list of token lists (strings), the same way for documents and
queries. Heavy libraries (bm25s, PyStemmer, kiwipiepy) are imported on first use.

* ``english``: bm25s' tokenizer: lower-case, word tokens of two or more characters (``\\b\\w\\w+\\b``), English
  stopwords removed, Snowball (PyStemmer) English stemming. This is the setup of the published bm25s numbers.
* ``korean``: kiwipiepy morphological analysis (model from ``kiwipiepy-model``), keeping the **content
  morphemes** only: nouns (``NNG`` ``NNP`` ``NNB`` ``NR`` ``NP``), verb and adjective roots (``VV`` ``VA``,
  incl. their ``-R``/``-I`` variants), roots (``XR``), foreign words (``SL``, lower-cased and English-stemmed so
  they match the ``english`` tokenizer), numbers (``SN``) and Hanja (``SH``). Particles, endings, affixes and
  punctuation are dropped: they are frequent, carry no topic, and only dilute BM25.
* ``regex``: plain lower-cased word tokens (``\\w+``): no stopwords, no stemming, no morphology. A baseline that
  works for any language written with spaces.
* ``auto``: per text, by script: a text whose letters are at least 30 % Hangul goes through ``korean``,
  anything else through ``english``; so mixed Korean/English corpora and queries work.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

from evolve.errors import ConfigError, did_you_mean

__all__ = ["KOREAN_TAGS", "TOKENIZERS", "get_tokenizer", "is_korean", "tokenize"]

#: kiwipiepy part-of-speech tags kept by the ``korean`` tokenizer (prefix before any ``-R``/``-I`` suffix)
KOREAN_TAGS = frozenset({"NNG", "NNP", "NNB", "NR", "NP", "VV", "VA", "XR", "SL", "SN", "SH"})

_WORD = re.compile(r"\w+", re.UNICODE)
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_lock = threading.Lock()
_stemmer = None
_kiwi = None
_stopwords: frozenset[str] | None = None
_bm25s = None


def bm25s_module():
    """``bm25s``, imported on first use and quietened once (it sets its logger to DEBUG on import)."""
    global _bm25s
    with _lock:
        if _bm25s is None:
            import bm25s

            logging.getLogger("bm25s").setLevel(logging.WARNING)
            _bm25s = bm25s
        return _bm25s


def _english_stemmer():
    global _stemmer
    with _lock:
        if _stemmer is None:
            import Stemmer

            _stemmer = Stemmer.Stemmer("english")
        return _stemmer


def _english_stopwords() -> frozenset[str]:
    global _stopwords
    if _stopwords is None:
        from bm25s.stopwords import STOPWORDS_EN

        _stopwords = frozenset(STOPWORDS_EN)
    return _stopwords


def _get_kiwi():
    global _kiwi
    with _lock:
        if _kiwi is None:
            try:
                from kiwipiepy import Kiwi
            except ImportError:
                raise ConfigError(
                    "sparse.tokenizer 'korean' needs kiwipiepy and kiwipiepy-model: pip install kiwipiepy kiwipiepy-model"
                ) from None
            _kiwi = Kiwi()
        return _kiwi


def _english(texts: list[str]) -> list[list[str]]:
    if not texts:
        return []
    return bm25s_module().tokenize(
        list(texts), lower=True, stopwords="en", stemmer=_english_stemmer(), return_ids=False, show_progress=False
    )


def _regex(texts: list[str]) -> list[list[str]]:
    return [_WORD.findall(t.lower()) for t in texts]


def _korean(texts: list[str]) -> list[list[str]]:
    if not texts:
        return []
    kiwi = _get_kiwi()
    stem = _english_stemmer().stemWord
    stop = _english_stopwords()
    out: list[list[str]] = []
    for tokens in kiwi.tokenize(list(texts)):
        keep = []
        for t in tokens:
            tag = t.tag.split("-", 1)[0]
            if tag not in KOREAN_TAGS:
                continue
            form = t.form
            if tag == "SL":
                form = form.lower()
                if form in stop:
                    continue
                form = stem(form)
            keep.append(form)
        out.append(keep)
    return out


def is_korean(text: str) -> bool:
    """True when at least 30 % of the letters of ``text`` are Hangul."""
    hangul = len(_HANGUL.findall(text))
    if not hangul:
        return False
    letters = len(_LETTER.findall(text))
    return hangul >= 0.3 * max(letters, 1)


def _auto(texts: list[str]) -> list[list[str]]:
    texts = list(texts)
    ko = [i for i, t in enumerate(texts) if is_korean(t)]
    ko_set = set(ko)
    en = [i for i in range(len(texts)) if i not in ko_set]
    out: list[list[str]] = [[] for _ in texts]
    for idx, toks in zip(ko, _korean([texts[i] for i in ko])):
        out[idx] = toks
    for idx, toks in zip(en, _english([texts[i] for i in en])):
        out[idx] = toks
    return out


#: tokenizer name -> function(list of texts) -> list of token lists
TOKENIZERS: dict[str, Callable[[list[str]], list[list[str]]]] = {
    "english": _english,
    "korean": _korean,
    "regex": _regex,
    "auto": _auto,
}


def get_tokenizer(name: str) -> Callable[[list[str]], list[list[str]]]:
    if name not in TOKENIZERS:
        raise ConfigError(
            f"sparse.tokenizer: expected one of {', '.join(TOKENIZERS)}, got '{name}'{did_you_mean(name, TOKENIZERS)}"
        )
    return TOKENIZERS[name]


def tokenize(texts: list[str], name: str) -> list[list[str]]:
    """Token lists of ``texts`` with the tokenizer ``name``."""
    return get_tokenizer(name)(list(texts))
