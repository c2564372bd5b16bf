"""The vendored UBI 1.3.0 JSON schemas (``schemas/``; source, commit and license in its README)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

__all__ = ["SCHEMA_DIR", "SCHEMAS", "ubi_schema", "ubi_schema_verbatim"]

SCHEMA_DIR = Path(__file__).with_name("schemas")
#: short name -> file
SCHEMAS = {
    "event": "event.schema.json",
    "query": "query.request.schema.json",
    "response": "query.response.schema.json",
}


@cache
def _load(name: str) -> dict:
    if name not in SCHEMAS:
        raise ValueError(f"expected a UBI schema name, one of {', '.join(SCHEMAS)}, got {name!r}")
    return json.loads((SCHEMA_DIR / SCHEMAS[name]).read_text(encoding="utf-8"))


def ubi_schema_verbatim(name: str) -> dict:
    """The schema exactly as upstream ships it."""
    return copy.deepcopy(_load(name))


def ubi_schema(name: str) -> dict:
    """The schema with upstream's one defect corrected in memory: ``event.action_name`` is ``oneOf`` an enum
    of common names *or* any string, which rejects every name in the enum (both branches match); the intent is
    ``anyOf``. Everything else is the vendored file."""
    schema = ubi_schema_verbatim(name)
    if name == "event":
        action = schema["properties"]["action_name"]
        action["anyOf"] = action.pop("oneOf")
    return schema


def _is_rfc3339(value) -> bool:
    """RFC 3339 date-time (what JSON Schema's ``date-time`` format means): a date, ``T``, a time and a zone."""
    import re
    from datetime import datetime

    if not isinstance(value, str):
        return True  # formats only constrain strings
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True


def ubi_validator(name: str, *, verbatim: bool = False):
    """A ``jsonschema`` Draft 2020-12 validator for the schema ``name`` that also checks ``date-time`` formats
    (jsonschema checks formats only when asked, and ``date-time`` only with an optional package). Needs the
    ``jsonschema`` package (a test extra)."""
    import jsonschema

    checker = jsonschema.FormatChecker()
    checker.checks("date-time")(_is_rfc3339)
    schema = ubi_schema_verbatim(name) if verbatim else ubi_schema(name)
    return jsonschema.Draft202012Validator(schema, format_checker=checker)


__all__ += ["ubi_validator"]
