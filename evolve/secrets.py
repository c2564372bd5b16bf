"""Keep secrets out of params, tags, logs and history: redact URLs, warn about inline passwords."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["redact_url", "has_inline_password", "warn_inline_password"]

log = logging.getLogger("evolve.secrets")

_SECRET_QUERY_KEYS = {"password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "access_token"}


def has_inline_password(url: str | None) -> bool:
    if not url or "://" not in url:
        return False
    parts = urlsplit(url)
    if parts.password:
        return True
    return any(k.lower() in _SECRET_QUERY_KEYS for k, _ in parse_qsl(parts.query, keep_blank_values=True))


def redact_url(url: str | None) -> str | None:
    """``postgresql://u:secret@h/db?password=x`` -> ``postgresql://u:***@h/db?password=***``."""
    if not url or "://" not in url or not has_inline_password(url):
        return url  # untouched: urlunsplit would turn sqlite:////abs/path into sqlite://abs/path
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        user = parts.username or ""
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{user}:***@{host}"
    query = parts.query
    if query:
        pairs = [(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def warn_inline_password(url: str | None, what: str) -> None:
    if has_inline_password(url):
        log.warning(
            "%s %s carries an inline password: put it in PGPASSWORD or a libpq passfile (~/.pgpass, PGPASSFILE) "
            "or an environment file instead; it is never logged or recorded",
            what,
            redact_url(url),
        )
