"""Checking a model's answer against the passages it was given, and telling a refusal.

* **Markers.** ``[n]``, ``[n, m]`` (or ``;``) and ranges ``[a-b]`` (``–`` too: every number from a to b, when
  a <= b and the span is at most 20) are citations, in full-width brackets ``［n］`` and ``【n】`` too (CJK models
  write them). A number outside ``1..n_passages`` points to no given passage: it is removed from the answer and
  counted (``removed_markers``); a bracket left with no valid number goes whole (with the space before it). A
  marker that lost a number, or that is not written as plain ASCII ``[n, m]`` (a range, full-width), is written
  back as ``[n][m]`` of its valid numbers (the prompt's own style, one link each on the page).
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

__all__ = ["Checked", "check_answer", "is_refusal", "sentence_citations", "MARKER"]

_ITEM = r"\d{1,4}(?:\s*[-–—]\s*\d{1,4})?"
_SEP = r"\s*[,;，；、]\s*"
#: a citation: [3], [1, 2], [1;2], [1-3], ［2］, 【2】
MARKER = re.compile(rf"[\[［【]\s*({_ITEM}(?:{_SEP}{_ITEM})*)\s*[\]］】]")
_LEADING_MARKERS = re.compile(rf"^(?:\s*[\[［【]\s*{_ITEM}(?:{_SEP}{_ITEM})*\s*[\]］】])+")
#: a numbered list item's number at the start of a line: "1. ", "2) ", "a. "
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,3}|[A-Za-z])[.)]\s+(?=\S)")
#: a marker as the checked answer writes it: ASCII brackets and digits, no range
_PLAIN = re.compile(r"\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\]", re.ASCII)
#: the widest range [a-b] read as every number from a to b (a wider one is its two ends)
RANGE_SPAN = 20
_CONTENT = re.compile(r"\w")
#: code: a fenced block (to its closing fence, or the end of an unclosed one), or an `inline` span
_CODE = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)|`[^`\n]+`", re.DOTALL)
#: brackets inside code are swapped for private-use characters while markers are read, and swapped back after
_DEFUSE = str.maketrans({"[": "\ue000", "]": "\ue001", "［": "\ue002", "］": "\ue003", "【": "\ue004", "】": "\ue005"})
_RESTORE = str.maketrans({v: k for k, v in _DEFUSE.items()})


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


def _numbers(inner: str) -> list[int]:
    """The passage numbers a marker's inside names (``"1, 3-5"`` -> 1, 3, 4, 5)."""
    out: list[int] = []
    for item in re.split(_SEP, inner.strip()):
        ends = [int(x) for x in re.split(r"\s*[-–—]\s*", item)]
        if len(ends) == 2 and ends[0] <= ends[1] <= ends[0] + RANGE_SPAN:
            out.extend(range(ends[0], ends[1] + 1))
        else:
            out.extend(ends)
    return out


def _clean_markers(text: str, n: int) -> tuple[str, int]:
    removed = 0

    def fix(m: re.Match) -> str:
        nonlocal removed
        nums = _numbers(m.group(1))
        valid = [x for x in nums if 1 <= x <= n]
        removed += len(nums) - len(valid)
        if not valid:
            return "\0"  # removed below, with the space before it
        if len(valid) == len(nums) and _PLAIN.fullmatch(m.group(0)):
            return m.group(0)
        return "".join(f"[{x}]" for x in dict.fromkeys(valid))

    out = MARKER.sub(fix, text)
    out = re.sub(r"[ \t]*\0", "", out)
    return out, removed


def _markers(text: str) -> list[int]:
    return [x for m in MARKER.finditer(text) for x in _numbers(m.group(1))]


def _line_pieces(line: str) -> list[str]:
    """A line's sentences; a list item's number (``1.``, ``2)``, ``a.``) stays with the item's first sentence
    (the splitter would make ``1.`` a sentence of its own)."""
    from evolve.chunking import split_sentences

    item = _LIST_ITEM.match(line)
    head, rest = (item.group(0).lstrip(), line[item.end():]) if item else ("", line)
    pieces = [s.strip() for s in split_sentences(rest) if s.strip()]
    if head:
        pieces = [head + pieces[0], *pieces[1:]] if pieces else [head.strip()]
    return pieces


def _sentences(text: str) -> list[str]:
    pieces: list[str] = []
    for line in text.splitlines():
        if line.strip():
            pieces.extend(_line_pieces(line))
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
    cleaned = cleaned.translate(_RESTORE)
    unsupported = [s for s, marks in sentence_citations(cleaned) if not marks]
    return Checked(cleaned, cited, removed, unsupported, False)


def sentence_citations(text: str) -> list[tuple[str, list[int]]]:
    """The sentences of an answer that hold words, each as written (markers in) with the passage numbers it cites
    (by the module's rules: a marker after the full stop cites the sentence before; code cites nothing)."""
    return [(s.translate(_RESTORE), _markers(s)) for s in _sentences(_defuse_code(text))
            if _CONTENT.search(MARKER.sub("", s))]
