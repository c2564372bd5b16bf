"""Tickets (or chats, or any records) as documents through a field mapping.

Input: JSONL (``.jsonl``, ``.jsonl.gz``; one record per line), a JSON list of records (``.json``), or CSV
(``.csv``, UTF-8 with or without BOM, or the ``encoding`` given). The mapping names, per document, its ``id``
(one value), its ``title`` and ``text`` (one or more field paths, joined in order: title parts with a space,
text parts with a blank line), its ``properties`` (kept as ``metadata["properties"]``, never content) and, optionally,
its ``url``: the field holding a link to the original ticket (``metadata["url"]``, shown with citations and
results; never content, never a fingerprint).

A path is ``subject``, ``customer.email`` or ``articles.*.body`` (``*``: every item of a list, in order); a
CSV column is named as it is in the header. A mapped column missing from a CSV header, a mapped path that occurs
in no record, a record without an id or a duplicate id is a one-line error naming file and line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evolve.datasets._common import Parts, finalize_parts, nfc_all, open_text, read_jsonl
from evolve.datasets._fields import paths_of, values_at
from evolve.datasets._html import html_to_text
from evolve.datasets._types import Dataset, Document, nfc
from evolve.errors import DatasetError, did_you_mean

__all__ = ["FieldMap", "read_tickets", "load_tickets", "TICKET_SUFFIXES"]

TICKET_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".csv")


@dataclass(frozen=True)
class FieldMap:
    """Which fields of a record make a document."""

    id: str
    title: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    properties: tuple[str, ...] = ()
    #: the field holding a link to the original (``metadata["url"]``, never content)
    url: str | None = None

    def roles(self) -> Iterator[tuple[str, str]]:
        yield "id", self.id
        for role in ("title", "text", "properties"):
            for path in getattr(self, role):
                yield role, path
        if self.url:
            yield "url", self.url


def _records(path: Path, encoding: str, delimiter: str) -> tuple[list[str] | None, Iterator[tuple[int | None, str, dict]]]:
    """The CSV header (None for JSON) and the records as (line, where-for-messages, record)."""
    name = path.name.lower()
    if name.endswith(".csv"):
        return _csv_records(path, encoding, delimiter)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return None, ((lineno, f"line {lineno}", obj) for lineno, obj in read_jsonl(path))
    if name.endswith((".json", ".json.gz")):
        try:
            with open_text(path) as fh:
                data = json.load(fh)
        except json.JSONDecodeError as err:
            raise DatasetError(f"expected a JSON list of records, got malformed JSON ({err.msg})",
                               path=str(path), line=err.lineno) from None
        if not isinstance(data, list):
            raise DatasetError(f"expected a JSON list of records, got {type(data).__name__}", path=str(path))
        for i, obj in enumerate(data, 1):
            if not isinstance(obj, dict):
                raise DatasetError(f"expected a JSON object as record {i}, got {type(obj).__name__}", path=str(path))
        return None, ((None, f"record {i}", obj) for i, obj in enumerate(data, 1))
    raise DatasetError(f"expected tickets as {', '.join(TICKET_SUFFIXES)}, got '{path.name}'", path=str(path))


def _csv_records(path: Path, encoding: str, delimiter: str):
    data = path.read_bytes()
    utf8 = encoding.lower().replace("_", "-") in {"utf-8", "utf8"}
    try:
        raw = data.decode("utf-8-sig" if utf8 else encoding)
    except UnicodeDecodeError as err:
        hint = " (Excel on Korean Windows writes cp949: set 'encoding: cp949' in the manifest)" if utf8 else ""
        raise DatasetError(f"expected {encoding} text, got undecodable bytes{hint}",
                           path=str(path), line=data[: err.start].count(b"\n") + 1) from None
    except LookupError:
        raise DatasetError(f"expected a known text encoding, got '{encoding}'", path=str(path)) from None
    reader = csv.reader(io.StringIO(nfc(raw), newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise DatasetError(f"expected CSV, got {err}", path=str(path), line=1) from None
    if not header:
        raise DatasetError("expected a header row naming the columns, got an empty file", path=str(path), line=1)
    columns = [c.strip() for c in header]

    def rows():
        while True:
            start = reader.line_num + 1  # a quoted cell may span lines: a record is named by its first
            try:
                row = next(reader, None)
            except csv.Error as err:
                raise DatasetError(f"expected CSV, got {err}", path=str(path), line=start) from None
            if row is None:
                return
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(columns):
                raise DatasetError(f"expected {len(columns)} columns as in the header, got {len(row)}",
                                   path=str(path), line=start)
            yield start, f"line {start}", dict(zip(columns, row, strict=False))

    return columns, rows()


def _text(value: Any, what: str, path: Path, line: int | None, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    suffix = "" if line is not None else f" ({where})"
    raise DatasetError(f"expected text at '{what}', got a JSON {type(value).__name__}{suffix}", path=str(path), line=line)


def _raw(record: dict, path: str) -> Any:
    current: Any = record
    for key in path.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(key)
    return current


class _Reader:
    """Reads one file's records into documents; remembers which mapped paths occurred at all."""

    def __init__(self, path: Path, fields: FieldMap, *, source: str, strip_html: bool):
        self.path, self.fields, self.source, self.strip_html = path, fields, source, strip_html
        self.is_csv = path.name.lower().endswith(".csv")
        self.seen_paths: set[str] = set()

    def get(self, record: dict, p: str) -> tuple[list[Any], bool]:
        if self.is_csv:
            cell = record.get(p)
            return ([cell] if cell and cell.strip() else []), p in record
        return values_at(record, p)

    def join(self, record: dict, paths: tuple[str, ...], sep: str, line: int | None, where: str) -> str:
        pieces = []
        for p in paths:
            values, found = self.get(record, p)
            if found:
                self.seen_paths.add(p)
            for v in values:
                piece = _text(v, p, self.path, line, where)
                piece = html_to_text(piece) if self.strip_html else piece.strip()
                if piece:
                    pieces.append(piece)
        return nfc(sep.join(pieces))

    def doc_id(self, record: dict, line: int | None, suffix: str) -> str:
        ids, _ = self.get(record, self.fields.id)
        if len(ids) != 1 or isinstance(ids[0], dict | list):
            got = "none" if not ids else f"{len(ids)} values" if len(ids) > 1 else f"a JSON {type(ids[0]).__name__}"
            raise DatasetError(f"expected one id at '{self.fields.id}', got {got}{suffix}", path=str(self.path), line=line)
        doc_id = nfc(str(ids[0]).strip())
        if not doc_id:
            raise DatasetError(f"expected a non-empty id at '{self.fields.id}', got an empty one{suffix}",
                               path=str(self.path), line=line)
        return doc_id

    def properties(self, record: dict) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in self.fields.properties:
            values, found = self.get(record, p)
            if not found:
                continue
            self.seen_paths.add(p)
            if self.is_csv:
                out[p] = nfc(record[p])
            else:  # a plain path keeps its value as it is (a list stays a list); a path with '*' gives the list
                out[p] = nfc_all(values if "*" in p.split(".") else _raw(record, p))
        return out

    def url(self, record: dict) -> str | None:
        """The record's link to the original (the ``url`` mapping): its one non-empty string, else None."""
        if not self.fields.url:
            return None
        values, found = self.get(record, self.fields.url)
        if found:
            self.seen_paths.add(self.fields.url)
        links = [str(v).strip() for v in values if isinstance(v, str | int) and str(v).strip()]
        return nfc(links[0]) if len(links) == 1 else None

    def document(self, record: dict, line: int | None, where: str, doc_id: str) -> Document:
        title = self.join(record, self.fields.title, " ", line, where)
        text = self.join(record, self.fields.text, "\n\n", line, where)
        metadata = {"source": self.source, "properties": self.properties(record)}
        url = self.url(record)
        if url:
            metadata["url"] = url
        return Document(doc_id, title, text, metadata)


def read_tickets(path: Path, fields: FieldMap, *, source: str = "tickets", encoding: str = "utf-8",
                 delimiter: str = ",", strip_html: bool = False) -> Parts:
    reader = _Reader(path, fields, source=source, strip_html=strip_html)
    columns, records = _records(path, encoding, delimiter)
    for role, p in fields.roles() if columns is not None else ():
        if p not in columns:
            raise DatasetError(f"expected a column '{p}' (mapped as {role}) in the header, got "
                               f"{', '.join(columns)}{did_you_mean(p, columns)}", path=str(path), line=1)
    corpus: dict[str, Document] = {}
    first_seen: dict[str, str] = {}
    sample_paths: set[str] = set()
    n_records = 0
    for line, where, record in records:
        n_records += 1
        if n_records <= 20 and columns is None:
            sample_paths.update(paths_of(record))
        doc_id = reader.doc_id(record, line, "" if line is not None else f" ({where})")
        if doc_id in first_seen:
            raise DatasetError(f"duplicate document id '{doc_id}' (first seen on {first_seen[doc_id]})",
                               path=str(path), line=line)
        first_seen[doc_id] = where
        corpus[doc_id] = reader.document(record, line, where, doc_id)
    if not n_records:
        raise DatasetError("expected at least one record, got none", path=str(path))
    if columns is None:
        for role, p in fields.roles():
            if role != "id" and p not in reader.seen_paths:
                raise DatasetError(f"expected the field '{p}' (mapped as {role}) in some record, got it in none of "
                                   f"{n_records}{did_you_mean(p, sample_paths)}", path=str(path))
    return Parts(corpus)


def load_tickets(path: Path, fields: FieldMap, *, name: str | None = None, strict: bool = False, **options) -> Dataset:
    stem = path.name.split(".")[0]
    return finalize_parts(name or stem, str(path), read_tickets(path, fields, **options), strict=strict)
