"""PostgreSQL URLs, one low module shared by the Optuna storage, the embedding cache and the feedback store.

The same ``postgresql://USER@HOST[:PORT]/DB`` a deployment configures once is read three ways: SQLAlchemy's
form for Optuna's RDB storage (``postgresql+psycopg://``, the driver named), libpq's form for psycopg
(``postgresql://``), and a yes/no "is this PostgreSQL" for picking a store. Passwords never belong in these
URLs (PGPASSWORD or a libpq passfile): :mod:`evolve.secrets` warns about and redacts an inline one.
"""

from __future__ import annotations

__all__ = ["POSTGRES_SCHEMES", "is_postgres_url", "libpq_url", "sqlalchemy_url"]

#: the schemes that name PostgreSQL: libpq's, and SQLAlchemy's with a driver
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2")


def is_postgres_url(url: object) -> bool:
    return isinstance(url, str) and "://" in url and url.split("://", 1)[0].lower() in POSTGRES_SCHEMES


def libpq_url(url: str) -> str:
    """``postgresql+psycopg://…`` (SQLAlchemy form) -> ``postgresql://…`` (what libpq parses)."""
    scheme, rest = url.split("://", 1)
    if scheme.lower() not in POSTGRES_SCHEMES:
        raise ValueError(f"expected a postgresql:// URL, got scheme '{scheme}'")
    return "postgresql://" + rest


def sqlalchemy_url(url: str) -> str:
    """A bare ``postgresql://`` names SQLAlchemy's default driver, psycopg2; when only psycopg 3 is installed,
    the URL names it (``postgresql+psycopg://``). Other URLs come back unchanged."""
    if url.split("://", 1)[0] != "postgresql":
        return url
    try:
        import psycopg2  # noqa: F401  (probe: fall back to psycopg 3)
    except ImportError:
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url
