"""Input checks shared by the routes: each refusal is a 422 with one line saying what was expected and what came."""

from __future__ import annotations

__all__ = ["unprocessable", "query_text", "check_k"]


def unprocessable(message: str):
    from fastapi import HTTPException

    return HTTPException(status_code=422, detail=message)


def query_text(raw: str, opts, field: str = "query") -> str:
    """The question or query as searched: stripped, non-empty, at most ``max_query_chars``."""
    text = raw.strip()
    if not text:
        raise unprocessable(f"{field}: expected a non-empty text, got an empty one")
    if len(text) > opts.max_query_chars:
        raise unprocessable(f"{field}: expected at most {opts.max_query_chars} characters, got {len(text)}")
    return text


def check_k(k: int, opts) -> int:
    if not 1 <= k <= opts.max_k:
        raise unprocessable(f"k: expected 1 to {opts.max_k}, got {k}")
    return k
