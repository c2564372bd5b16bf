"""The answer prompts: package data, one YAML file per language and version (``answer.<lang>.yaml`` holds the
current version; older ones stay as ``answer.v<N>.<lang>.yaml``), as the gold prompts are shipped.

A file holds ``name`` (``answer``), ``lang``, ``version`` (what ``answer.prompt_version`` names), ``not_found``
(the fixed refusal line), ``system``, ``passage`` (a :class:`string.Template` of one numbered passage:
``$marker``, ``$title``, ``$source``, ``$text``) and ``user`` (``$passages``, ``$question``, ``$not_found``). A
prompt's sha256 (of the file's bytes) goes with every answer made with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from string import Template

__all__ = ["AnswerPrompt", "SupportPrompt", "load_answer_prompt", "load_support_prompt", "not_found_lines",
           "prompt_versions"]


@dataclass(frozen=True)
class AnswerPrompt:
    lang: str
    version: str
    sha256: str
    not_found: str
    system: str
    passage: str
    user: str

    def render_passage(self, marker: int, title: str, url: str | None, text: str) -> str:
        """One numbered passage as the prompt shows it."""
        return Template(self.passage).substitute(marker=marker, title=title or "", text=text,
                                                 source=f" ({url})" if url else "")

    def messages(self, question: str, passages: list[str]) -> list[dict[str, str]]:
        """The chat messages (system, user) for ``question`` and the rendered ``passages``."""
        user = Template(self.user).substitute(passages="\n\n".join(passages), question=question,
                                              not_found=self.not_found)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def provenance(self) -> dict[str, str]:
        return {"name": "answer", "lang": self.lang, "version": self.version, "sha256": self.sha256}


@lru_cache(maxsize=1)
def _shipped() -> dict[tuple[str, str], AnswerPrompt]:
    """(version, lang) -> prompt, for every answer prompt file in the package."""
    import yaml

    out: dict[tuple[str, str], AnswerPrompt] = {}
    for res in resources.files(__name__).iterdir():
        if not (res.name.startswith("answer.") and res.name.endswith(".yaml")):
            continue
        raw = res.read_bytes()
        doc = yaml.safe_load(raw.decode("utf-8"))
        p = AnswerPrompt(lang=str(doc["lang"]), version=str(doc["version"]), sha256=hashlib.sha256(raw).hexdigest(),
                         not_found=" ".join(str(doc["not_found"]).split()), system=str(doc["system"]).strip(),
                         passage=str(doc["passage"]), user=str(doc["user"]))
        out[(p.version, p.lang)] = p
    return out


def prompt_versions() -> tuple[str, ...]:
    """The versions shipped (each in English at least)."""
    return tuple(sorted({v for v, lang in _shipped() if lang == "en"}))


def load_answer_prompt(version: str, lang: str) -> AnswerPrompt:
    """The shipped answer prompt ``version`` in ``lang``; the English one where there is none in ``lang``."""
    shipped = _shipped()
    got = shipped.get((str(version), lang)) or shipped.get((str(version), "en"))
    if got is None:
        from evolve.errors import ConfigError, did_you_mean

        versions = prompt_versions()
        raise ConfigError(f"answer.prompt_version: expected one of {', '.join(versions)}, got '{version}'"
                          f"{did_you_mean(str(version), versions)}")
    return got


def not_found_lines(version: str) -> dict[str, str]:
    """lang -> the fixed refusal line of every language of ``version``."""
    return {lang: p.not_found for (v, lang), p in _shipped().items() if v == str(version)}


@dataclass(frozen=True)
class SupportPrompt:
    """The support judge's prompt (``support.<lang>.yaml``): premise and claim in, one of ``choices`` out (the
    first one means "supported")."""

    lang: str
    version: str
    sha256: str
    system: str
    user: str
    choices: tuple[str, ...]

    def messages(self, premise: str, claim: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": Template(self.user).substitute(premise=premise, claim=claim)}]

    def provenance(self) -> dict[str, str]:
        return {"name": "support", "lang": self.lang, "version": self.version, "sha256": self.sha256}


@lru_cache(maxsize=8)
def load_support_prompt(lang: str) -> SupportPrompt:
    """The shipped support-judge prompt in ``lang`` (English where there is none in ``lang``)."""
    import yaml

    files = resources.files(__name__)
    res = files / f"support.{lang}.yaml"
    if not res.is_file():
        res = files / "support.en.yaml"
    raw = res.read_bytes()
    doc = yaml.safe_load(raw.decode("utf-8"))
    return SupportPrompt(lang=str(doc["lang"]), version=str(doc["version"]), sha256=hashlib.sha256(raw).hexdigest(),
                         system=" ".join(str(doc["system"]).split()), user=str(doc["user"]),
                         choices=tuple(str(c) for c in doc["choices"]))
