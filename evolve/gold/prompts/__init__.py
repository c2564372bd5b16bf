"""The prompts of ``evolve gold generate`` and ``evolve gold judge``: package data, one YAML file per task and
language (``<name>.<lang>.yaml``), each with a ``version`` string; a prompt's sha256 (of the file's bytes) goes
into the provenance of everything written with it.

A file holds ``system`` (the system message), ``user`` (a :class:`string.Template`: ``$passage``, ``$kind``,
``$query``), and per task ``kinds`` (question kind -> the words the user message puts in ``$kind``) or ``grades``
(the allowed answers of a grading prompt).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from string import Template

__all__ = ["Prompt", "load_prompt", "prompt_names"]


@dataclass(frozen=True)
class Prompt:
    name: str
    lang: str
    version: str
    sha256: str
    system: str
    user: str
    kinds: dict[str, str] = field(default_factory=dict)
    grades: tuple[str, ...] = ()

    def render(self, **values: str) -> list[dict[str, str]]:
        """The chat messages (system, user) with ``values`` filled in; a missing value is a ``KeyError``."""
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": Template(self.user).substitute(values)}]

    def provenance(self) -> dict[str, str]:
        return {"name": self.name, "lang": self.lang, "version": self.version, "sha256": self.sha256}


def prompt_names() -> list[str]:
    """``name.lang`` of every shipped prompt."""
    return sorted(p.name[: -len(".yaml")] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml"))


@lru_cache(maxsize=16)
def load_prompt(name: str, lang: str) -> Prompt:
    """The shipped prompt ``name`` in ``lang``; the English one where there is none in ``lang``."""
    import yaml

    files = resources.files(__name__)
    res = files / f"{name}.{lang}.yaml"
    if not res.is_file():
        res = files / f"{name}.en.yaml"
    if not res.is_file():
        raise KeyError(f"no prompt '{name}' in {', '.join(prompt_names())}")
    raw = res.read_bytes()
    doc = yaml.safe_load(raw.decode("utf-8"))
    return Prompt(
        name=doc["name"],
        lang=doc["lang"],
        version=str(doc["version"]),
        sha256=hashlib.sha256(raw).hexdigest(),
        system=doc["system"].strip(),
        user=doc["user"],
        kinds=dict(doc.get("kinds") or {}),
        grades=tuple(str(g) for g in doc.get("grades") or ()),
    )
