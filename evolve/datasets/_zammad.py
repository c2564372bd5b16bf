"""Zammad tickets with their articles, as Zammad's REST API returns them.

Accepted input (a ``.json``/``.json.gz`` file, a ``.jsonl`` file of one ticket a line, or a folder of them):

- a ticket object with its articles inline: ``{"id": 7, "number": "22007", "title": …, "articles": [ … ]}``
  (``GET /api/v1/tickets/7`` plus ``GET /api/v1/ticket_articles/by_ticket/7``), or a list of such tickets, or
  ``{"tickets": [ … ]}``;
- an API response with ``assets`` (``GET /api/v1/tickets/7?all=true``, ``/tickets/search?expand=…``):
  ``{"assets": {"Ticket": {"7": {…}}, "TicketArticle": {"31": {"ticket_id": 7, …}}}}``.

One ticket is one document: id = its ``number`` (the number people quote; ``id_field: id`` for Zammad's
internal id), title = its ``title``, text = its articles' bodies in the order they were written (``created_at``),
``text/html`` bodies as plain text. Internal notes (``"internal": true``, agents only) are dropped unless
``internal_notes="keep"``: answers shown to people should not quote what only agents were meant to read.
``metadata["properties"]`` keeps state, priority, group, tags, customer, owner and dates, whichever are present.
With ``url_base`` (the Zammad server, ``https://helpdesk.example.com``), ``metadata["url"]`` is the ticket's page,
``<url_base>/#ticket/zoom/<id>`` (Zammad's internal ``id``), shown with citations; it is never a fingerprint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evolve.datasets._common import Parts, finalize_parts, nfc_all, open_text, read_jsonl
from evolve.datasets._html import html_to_text
from evolve.datasets._types import Dataset, Document, nfc
from evolve.errors import DatasetError

__all__ = ["read_zammad", "load_zammad", "INTERNAL_NOTES", "ticket_url"]

INTERNAL_NOTES = ("drop", "keep")
_PROPERTIES = ("number", "id", "state", "state_id", "priority", "priority_id", "group", "group_id", "tags",
               "customer", "customer_id", "organization", "organization_id", "owner", "owner_id",
               "created_at", "updated_at", "close_at")


def _tickets_of(data: Any, where: str) -> list[dict]:
    if isinstance(data, dict) and isinstance(data.get("assets"), dict) and "Ticket" in data["assets"]:
        assets = data["assets"]
        articles: dict[str, list[dict]] = {}
        for art in (assets.get("TicketArticle") or {}).values():
            articles.setdefault(str(art.get("ticket_id")), []).append(art)
        out = []
        for ticket in (assets.get("Ticket") or {}).values():
            out.append({**ticket, "articles": ticket.get("articles") or articles.get(str(ticket.get("id")), [])})
        return out
    if isinstance(data, dict) and isinstance(data.get("tickets"), list) and all(isinstance(t, dict) for t in data["tickets"]):
        return data["tickets"]
    if isinstance(data, dict) and "id" in data and ("title" in data or "articles" in data):
        return [data]
    if isinstance(data, list) and all(isinstance(t, dict) for t in data):
        return data
    got = type(data).__name__ if not isinstance(data, dict) else f"an object with keys {', '.join(list(data)[:5])}"
    raise DatasetError("expected a Zammad ticket (an object with 'id', 'title' and 'articles'), a list of them, "
                       f"or an API response with 'assets', got {got}", path=where)


def _read_file(path: Path) -> Iterator[tuple[str, int | None, dict]]:
    """(where, line, ticket)."""
    if path.name.lower().endswith((".jsonl", ".jsonl.gz")):
        for lineno, obj in read_jsonl(path):
            for ticket in _tickets_of(obj, f"{path}:{lineno}"):
                yield str(path), lineno, ticket
        return
    try:
        with open_text(path) as fh:
            data = json.load(fh)
    except json.JSONDecodeError as err:
        raise DatasetError(f"expected Zammad ticket JSON, got malformed JSON ({err.msg})", path=str(path), line=err.lineno) from None
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"expected a readable UTF-8 JSON file, got {type(err).__name__}: {err}", path=str(path)) from None
    for ticket in _tickets_of(data, str(path)):
        yield str(path), None, ticket


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith((".json", ".json.gz", ".jsonl", ".jsonl.gz")))
        if not files:
            raise DatasetError("expected Zammad ticket .json/.jsonl files in the folder, got none", path=str(path))
        return files
    return [path]


def _body(article: dict) -> str:
    body = article.get("body")
    if not isinstance(body, str):
        return ""
    if str(article.get("content_type") or "").lower().startswith("text/html"):
        return html_to_text(body)
    return body.strip()


def _ordered(articles: list[dict]) -> list[dict]:
    if articles and all(a.get("created_at") for a in articles):
        return sorted(articles, key=lambda a: str(a["created_at"]))
    return articles


def ticket_url(url_base: str | None, ticket: dict) -> str | None:
    """``<url_base>/#ticket/zoom/<id>`` (the ticket's page in Zammad's web UI, by its internal ``id``); None
    without a base or an id."""
    tid = ticket.get("id")
    if not url_base or tid is None or isinstance(tid, dict | list) or not str(tid).strip():
        return None
    return f"{url_base.rstrip('/')}/#ticket/zoom/{str(tid).strip()}"


def read_zammad(path: Path, *, source: str = "zammad", internal_notes: str = "drop", id_field: str = "number",
                url_base: str | None = None) -> Parts:
    if internal_notes not in INTERNAL_NOTES:
        raise DatasetError(f"expected internal_notes to be one of {', '.join(INTERNAL_NOTES)}, got '{internal_notes}'")
    corpus: dict[str, Document] = {}
    first_seen: dict[str, str] = {}
    for f in _files(path):
        for index, (where, line, ticket) in enumerate(_read_file(f), 1):
            label = f"line {line}" if line is not None else f"ticket {index}"
            raw_id = ticket.get(id_field)
            if raw_id is None or isinstance(raw_id, dict | list) or not str(raw_id).strip():
                hint = " (or set id_field: id in the manifest)" if id_field == "number" else ""
                raise DatasetError(f"expected a ticket '{id_field}' ({label}), got {raw_id!r}{hint}", path=where, line=line)
            doc_id = nfc(str(raw_id).strip())
            if doc_id in first_seen:
                raise DatasetError(f"duplicate ticket {id_field} '{doc_id}' ({label}; first seen in {first_seen[doc_id]})",
                                   path=where, line=line)
            first_seen[doc_id] = f"{where} {label}"
            articles = ticket.get("articles") or []
            if not isinstance(articles, list) or not all(isinstance(a, dict) for a in articles):
                raise DatasetError(f"expected 'articles' to be a list of article objects ({label})", path=where, line=line)
            kept = [a for a in _ordered(articles) if internal_notes == "keep" or a.get("internal") is not True]
            text = "\n\n".join(b for b in (_body(a) for a in kept) if b)
            properties = {k: nfc_all(ticket[k]) for k in _PROPERTIES if ticket.get(k) is not None}
            metadata = {"source": source, "properties": properties,
                        "internal_notes_dropped": len(articles) - len(kept)}
            url = ticket_url(url_base, ticket)
            if url:
                metadata["url"] = url
            corpus[doc_id] = Document(doc_id, nfc(str(ticket.get("title") or "").strip()), nfc(text), metadata)
    if not corpus:
        raise DatasetError("expected at least one Zammad ticket, got none", path=str(path))
    return Parts(corpus)


def load_zammad(path: Path, *, name: str | None = None, strict: bool = False, **options) -> Dataset:
    return finalize_parts(name or path.name.split(".")[0], str(path), read_zammad(path, **options), strict=strict)
