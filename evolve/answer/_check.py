"""Checking a model's answer against the passages it was given, and telling a refusal.

* **Markers.** ``[n]``, ``[n, m]`` (or ``;``) are citations. A number outside ``1..n_passages`` points to no
  given passage: it is removed from the answer and counted (``removed_markers``); a bracket left with no valid
  number goes whole (with the space before it).
* **Sentences.** The answer is split line by line, then into sentences by the project's splitter (sentencex;
  kiwipiepy where the text has Hangul). Citations written after the full stop (``... spooler. [1]``) open the
  next piece; they are given back to the sentence before when that one has no citation of its own. A sentence
  (with a letter or a digit in it) and no valid citation is listed in ``unsupported_sentences``: flagged, never
  dropped from the answer.
* **Code.** A bracketed number inside code (a ``` fenced block, or `inline` code) is an index such as ``a[2]``,
  not a citation: it is neither removed, nor counted, nor cited.
* **Grounded.** An answer with no valid citation at all that is not a refusal is ``grounded: false``. A refusal
  claims nothing, so it counts as grounded.
* **Refusal.** The answer begins with a fixed "not found" line of the prompt (any of its languages: a small
  model may refuse in English to a Korean question), compared after whitespace normalisation, exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["Checked", "check_answer", "is_refusal", "MARKER"]

#: a citation: [3], [1, 2], [1;2]
MARKER = re.compile(r"\[\s*(\d{1,4}(?:\s*[,;]\s*\d{1,4})*)\s*\]")
_LEADING_MARKERS = re.compile(r"^(?:\s*\[\s*\d{1,4}(?:\s*[,;]\s*\d{1,4})*\s*\])+")
_CONTENT = re.compile(r"\w")
#: code: a fenced block (to its closing fence, or the end of an unclosed one), or an `inline` span
_CODE = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)|`[^`\n]+`", re.DOTALL)
#: brackets inside code are swapped for private-use characters while markers are read, and swapped back after
_DEFUSE = str.maketrans({"[": "\ue000", "]": "\ue001"})
_RESTORE = str.maketrans({"\ue000": "[", "\ue001": "]"})


def _defuse_code(text: str) -> str:
    return _CODE.sub(lambda m: m.group(0).translate(_DEFUSE), text)


@dataclass
class Checked:
    """The answer as returned (``text``: markers to no given passage removed), the passages it cites (markers,
    ascending), and the flags."""

    text: str
    cited: list[int] = field(default_factory=list)
    removed_markers: int = 0
    unsupported_sentences: list[str] = field(default_factory=list)
    refused: bool = False

    @property
    def grounded(self) -> bool:
        return self.refused or bool(self.cited)


def _norm(text: str) -> str:
    return " ".join(text.split())


def is_refusal(text: str, not_found_lines: Iterable[str]) -> bool:
    """Whether ``text`` begins with one of the fixed lines (exactly, after whitespace normalisation)."""
    norm = _norm(text)
    return any(line and norm.startswith(_norm(line)) for line in not_found_lines)


def _clean_markers(text: str, n: int) -> tuple[str, int]:
    removed = 0

    def fix(m: re.Match) -> str:
        nonlocal removed
        nums = [int(x) for x in re.split(r"\s*[,;]\s*", m.group(1).strip())]
        valid = [x for x in nums if 1 <= x <= n]
        removed += len(nums) - len(valid)
        if not valid:
            return "\0"  # removed below, with the space before it
        if len(valid) == len(nums):
            return m.group(0)
        return "[" + ", ".join(str(x) for x in valid) + "]"

    out = MARKER.sub(fix, text)
    out = re.sub(r"[ \t]*\0", "", out)
    return out, removed


def _markers(text: str) -> list[int]:
    return [int(x) for m in MARKER.finditer(text) for x in re.split(r"\s*[,;]\s*", m.group(1).strip())]


def _sentences(text: str) -> list[str]:
    from evolve.chunking import split_sentences

    pieces: list[str] = []
    for line in text.splitlines():
        if line.strip():
            pieces.extend(s.strip() for s in split_sentences(line) if s.strip())
    out: list[str] = []
    for piece in pieces:
        lead = _LEADING_MARKERS.match(piece)
        if lead and out and not _markers(out[-1]):
            out[-1] = out[-1] + " " + lead.group(0).strip()
            piece = piece[lead.end():].strip()
        if not piece:
            continue
        if not _CONTENT.search(MARKER.sub("", piece)):  # only markers or punctuation (a code fence, a rule)
            if out and _markers(piece):
                out[-1] = out[-1] + " " + piece  # its markers cite the sentence before
            continue  # no words: no sentence to flag (it stays in the answer)
        out.append(piece)
    return out


def check_answer(text: str, n_passages: int, not_found_lines: Iterable[str], *, refusal_text: str | None = None
                 ) -> Checked:
    """Check a model's ``text`` against ``n_passages`` given passages (see the module's rules). A refusal comes
    back as ``refusal_text`` (the fixed line in the question's language) when given."""
    lines = list(not_found_lines)
    if is_refusal(text, lines):
        return Checked(refusal_text if refusal_text is not None else _norm(text), refused=True)
    cleaned, removed = _clean_markers(_defuse_code(text.strip()), n_passages)
    cited = sorted(set(_markers(cleaned)))
    unsupported = [s.translate(_RESTORE) for s in _sentences(cleaned)
                   if _CONTENT.search(MARKER.sub("", s)) and not _markers(s)]
    return Checked(cleaned.translate(_RESTORE), cited, removed, unsupported, False)
