"""The JSON object in a local model's reply: as it is, fenced, among prose, or mended by ``json-repair``."""

from __future__ import annotations

import json
import re

__all__ = ["parse_json_object"]

_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n?(.*?)(?:```|$)", re.S)


def _first_balanced_object(text: str) -> str | None:
    """The first ``{...}`` of ``text`` whose braces balance (braces inside JSON strings do not count)."""
    start = text.find("{")
    while start >= 0:
        depth, in_str, esc = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start : i + 1]
        start = text.find("{", start + 1)
    return None


def _loads_object(text: str) -> dict | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def parse_json_object(text: str) -> tuple[dict | None, str]:
    """The JSON object in a model's reply, and how it was found.

    ``how`` is ``"ok"`` (the reply is the object), ``"fenced"`` (inside a Markdown code fence), ``"extracted"``
    (the first balanced ``{...}`` among other text), ``"repaired"`` (broken JSON mended by ``json-repair``:
    trailing commas, single quotes, an unclosed string or brace, as a reply cut at ``max_tokens`` has) or
    ``"failed"`` (no object: the dict is None).
    """
    text = (text or "").strip()
    if not text:
        return None, "failed"
    obj = _loads_object(text)
    if obj is not None:
        return obj, "ok"
    how = "extracted"
    fenced = _FENCE.search(text)
    if fenced:
        text, how = fenced.group(1).strip(), "fenced"
        obj = _loads_object(text)
        if obj is not None:
            return obj, how
    candidate = _first_balanced_object(text)
    if candidate is not None:
        obj = _loads_object(candidate)
        if obj is not None:
            return obj, how
    start = text.find("{")
    if start < 0:
        return None, "failed"
    import json_repair

    try:
        obj = json_repair.loads(candidate if candidate is not None else text[start:])
    except Exception:  # noqa: BLE001 - the library's own failure is "no object", never ours to raise
        obj = None
    if isinstance(obj, list):  # "{...} {...}" comes back as a list: the first object is the answer
        obj = next((o for o in obj if isinstance(o, dict)), None)
    if isinstance(obj, dict) and obj:
        return obj, "repaired"
    return None, "failed"


