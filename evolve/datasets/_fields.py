"""Field paths of a ticket mapping: ``subject``, ``customer.email``, ``articles.*.body`` (``*``: every item of a
list, in order). A path names values; a mapped field joins them in order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["values_at", "paths_of"]


def values_at(obj: Any, path: str) -> tuple[list[Any], bool]:
    """The non-null values at ``path`` (lists at the end flattened), and whether the path exists at all."""
    current = [obj]
    for key in path.split("."):
        nxt: list[Any] = []
        for item in current:
            if key == "*":
                if isinstance(item, list):
                    nxt.extend(item)
                elif isinstance(item, dict):
                    nxt.extend(item.values())
            elif isinstance(item, dict) and key in item:
                nxt.append(item[key])
        current = nxt
    found = bool(current)
    out: list[Any] = []
    for v in current:
        if isinstance(v, list):
            out.extend(x for x in v if x is not None)
        elif v is not None:
            out.append(v)
    return out, found


def paths_of(obj: Any, prefix: str = "", depth: int = 4) -> Iterator[str]:
    """Every path in ``obj`` (``*`` for list items), for "did you mean"."""
    if depth == 0:
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{prefix}{k}"
            yield p
            yield from paths_of(v, p + ".", depth - 1)
    elif isinstance(obj, list):
        for item in obj[:3]:
            yield from paths_of(item, prefix + "*.", depth - 1)
