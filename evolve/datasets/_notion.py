"""Notion's "Markdown & CSV" export, as a ``.zip`` (nested ``Part-N`` zips included) or an unpacked folder.

What Notion writes, and what becomes of it:

- every page is ``<Title> <id>.md``, ``<id>`` its 32-hex Notion id; its sub-pages sit in the folder
  ``<Title> <id>/``. Each page is one document: id = the Notion id, title = the page's first ``# `` heading
  (file names are truncated by Notion), else the file name without the id; text = the rest of the page.
- a database is a stub page ``<Name> <id>.md``, a CSV ``<Name> <id>.csv`` (the exported view) and, in newer
  exports, ``<Name> <id>_all.csv`` (every row), and a folder ``<Name> <id>/`` holding one page per row. The row
  pages are the documents; the CSV (``_all`` when there is one, read as UTF-8 with or without BOM) only gives
  each row page its properties (``metadata["properties"]``: column -> cell; the first column is the title). Row
  pages repeat their properties as ``Key: value`` lines under the title: those lines are dropped from the text
  (properties are metadata), except for the columns named in ``content_properties``. A row with no page
  file is skipped with a warning (it has no Notion id to be found by); a stub page with nothing but its title and
  links to its CSV is not a document.
- links to other pages or files of the export (``[Text](Other%20Page%20<id>.md)``) become their text, so a
  page's content does not depend on where other pages sit; web links stay.
- ``metadata``: ``source``, ``path`` (the titles of the folders above the page, ``/``-joined), ``file`` (its path
  in the export), ``url`` (``https://www.notion.so/<id>``, the base overridable by a manifest's ``url_base``),
  ``properties`` and ``database`` (row pages). None of it is content: moving a page to another folder, or another
  link base, changes no fingerprint and re-embeds nothing.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from evolve.datasets._common import Parts, _preview, finalize_parts
from evolve.datasets._tree import ExportFile, is_zip, read_export
from evolve.datasets._types import Dataset, Document, nfc
from evolve.errors import DatasetError

__all__ = ["NOTION_URL_BASE", "is_notion_export", "load_notion", "page_url", "read_notion", "split_notion_id"]

_ID_TAIL = re.compile(r"^(?P<name>.*?)\s*(?P<id>[0-9a-fA-F]{32}|[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})$")
#: Notion wraps a workspace export in ``Export-<uuid>/`` (and its parts in ``Export-<uuid>-Part-N/``)
_WRAPPER = re.compile(r"(?i)^export-[0-9a-f-]{8,}(-part-\d+)?$")
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]*)\)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_PROPERTY_LINE = re.compile(r"^(?P<key>[^:\n]{1,200}?):\s?(?P<value>.*)$")


def split_notion_id(stem: str) -> tuple[str, str | None]:
    """``"VPN 설정 0123…cdef"`` -> ``("VPN 설정", "0123…cdef")``; ``(stem, None)`` without an id."""
    m = _ID_TAIL.match(stem)
    if not m:
        return stem, None
    return m.group("name").strip(), m.group("id").replace("-", "").lower()


def is_notion_export(path: Path) -> bool:
    """A zip, or a folder with at least one ``<Title> <32-hex id>.md``."""
    if is_zip(path):
        return True
    if not path.is_dir():
        return False
    return any(split_notion_id(p.stem)[1] for p in path.rglob("*.md"))


def _strip_links(text: str) -> str:
    def repl(m: re.Match) -> str:
        bang, label, target = m.groups()
        if _SCHEME.match(target) or target.startswith("#"):
            return m.group(0)
        return label

    return _LINK.sub(repl, text)


def _decode(f: ExportFile) -> str:
    try:
        return nfc(f.data.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise DatasetError(f"expected UTF-8 text, got undecodable bytes at offset {err.start}", path=f.where) from None


def _heading(text: str) -> tuple[str | None, str]:
    """The first ``# `` heading (when it is the first non-empty line) and the text after it."""
    stripped = text.lstrip()
    first, _, rest = stripped.partition("\n")
    if first.startswith("# "):
        return first[2:].strip(), rest
    return None, text


@dataclass
class _Database:
    folder: tuple[str, ...]
    #: the CSV's name without ``_all`` and ``.csv``: also the name of the stub page and of the rows' folder
    stem: str
    file: ExportFile
    all_rows: bool
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)


def _read_csv(db: _Database) -> None:
    text = _decode(db.file)
    reader = csv.reader(io.StringIO(text, newline=""))
    while True:
        start = reader.line_num + 1  # a quoted cell may span lines: a row is named by its first
        try:
            row = next(reader, None)
        except csv.Error as err:
            raise DatasetError(f"expected CSV, got {err}", path=db.file.where, line=start) from None
        if row is None:
            return
        if not db.columns:
            db.columns = [nfc(c.strip()) for c in row]
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(db.columns):
            raise DatasetError(f"expected {len(db.columns)} columns as in the header, got {len(row)}",
                               path=db.file.where, line=start)
        cells = [nfc(c) for c in row] + [""] * (len(db.columns) - len(row))
        db.rows.append(dict(zip(db.columns, cells, strict=True)))


def _databases(csv_files: list[ExportFile]) -> dict[tuple[str, ...], _Database]:
    """One database per rows folder: the ``_all.csv`` when there is one, else the view's CSV."""
    found: dict[tuple[str, ...], _Database] = {}
    for f in csv_files:
        stem = f.parts[-1][: -len(".csv")]
        all_rows = stem.endswith("_all")
        db = _Database(f.parts[:-1], stem[: -len("_all")] if all_rows else stem, f, all_rows)
        key = db.folder + (db.stem,)
        if key not in found or (all_rows and not found[key].all_rows):
            found[key] = db
    for db in found.values():
        _read_csv(db)
    return found


def _strip_wrappers(files: list[ExportFile]) -> list[ExportFile]:
    out = []
    for f in files:
        parts = f.parts
        while len(parts) > 1 and _WRAPPER.match(parts[0]):
            parts = parts[1:]
        out.append(ExportFile(parts, f.where, f.data))
    return out


#: where a Notion page id opens (a manifest's ``url_base`` overrides it: a self-hosted proxy, a workspace domain)
NOTION_URL_BASE = "https://www.notion.so"


def page_url(url_base: str | None, notion_id: str | None) -> str | None:
    """``<url_base>/<id>``, the id as Notion writes it in links (32 hex digits, no dashes); None without an id."""
    if not notion_id:
        return None
    return f"{(url_base or NOTION_URL_BASE).rstrip('/')}/{notion_id}"


def read_notion(path: Path, *, source: str = "notion", content_properties: tuple[str, ...] = (),
                url_base: str | None = None) -> Parts:
    """The pages of a Notion export as documents (no queries, no qrels: gold comes from ``--gold``)."""
    files = _strip_wrappers(read_export(path, (".md", ".csv")))
    pages = [f for f in files if f.parts[-1].lower().endswith(".md")]
    databases = _databases([f for f in files if f.parts[-1].lower().endswith(".csv")])
    if not pages:
        raise DatasetError("expected a Notion 'Markdown & CSV' export with .md pages, got none", path=str(path))

    parsed: list[tuple[ExportFile, str, str, str]] = []  # file, doc id, title, body
    titles: dict[str, str] = {}
    origin: dict[str, str] = {}
    for f in pages:
        name, nid = split_notion_id(f.parts[-1][: -len(".md")])
        doc_id = nid or "/".join(f.parts)[: -len(".md")]
        if doc_id in origin:
            raise DatasetError(f"duplicate Notion page id '{doc_id}' (also {origin[doc_id]})", path=f.where)
        origin[doc_id] = f.where
        heading, body = _heading(_decode(f))
        title = heading if heading is not None else name
        parsed.append((f, doc_id, title, body))
        if nid:
            titles[nid] = title

    def folder_title(component: str) -> str:
        name, nid = split_notion_id(component)
        return titles.get(nid, name) if nid else name

    unmatched_rows = {key: list(range(len(db.rows))) for key, db in databases.items()}
    corpus: dict[str, Document] = {}
    for f, doc_id, title, body in parsed:
        folder, stem = f.parts[:-1], f.parts[-1][: -len(".md")]
        metadata: dict = {"source": source, "path": "/".join(folder_title(c) for c in folder), "file": "/".join(f.parts)}
        url = page_url(url_base, split_notion_id(stem)[1])
        if url:
            metadata["url"] = url
        db = databases.get(folder)
        if db is not None:
            body, props = _row_properties(db, title, split_notion_id(stem)[0], body, unmatched_rows[folder])
            metadata["database"] = folder_title(folder[-1])
            metadata["properties"] = props
            extra = [f"{k}: {props[k]}" for k in content_properties if props.get(k, "").strip()]
            if extra:
                body = body.rstrip() + "\n\n" + "\n".join(extra)
        text = _strip_links(body).strip()
        if folder + (stem,) in databases and not _without_csv_links(body):
            continue  # a database's stub page: its rows are the documents
        corpus[doc_id] = Document(doc_id, title, text, metadata)

    notes = []
    for key, left in unmatched_rows.items():
        if left:
            db = databases[key]
            titles_left = [db.rows[i].get(db.columns[0], "") if db.columns else "" for i in left]
            notes.append(f"{db.file.where}: skipped {len(left)} database row(s) without a page file "
                         f"(matched by title): {_preview(titles_left)}")
    return Parts(corpus, notes=notes)


def _without_csv_links(body: str) -> str:
    """What a stub page holds besides links to its CSV."""
    return _LINK.sub(lambda m: "" if m.group(3).lower().split("#")[0].endswith(".csv") else m.group(0), body).strip()


def _row_properties(db: _Database, title: str, file_title: str, body: str, unmatched: list[int]) -> tuple[str, dict]:
    """The row's properties (from its CSV row, matched by title; else from the page's ``Key: value`` lines) and
    the body without those lines."""
    known = set(db.columns[1:])
    lines = body.lstrip("\n").split("\n")
    parsed: dict[str, str] = {}
    i = 0
    while i < len(lines):
        m = _PROPERTY_LINE.match(lines[i])
        if not m or m.group("key").strip() not in known:
            break
        parsed[m.group("key").strip()] = m.group("value").strip()
        i += 1
    rest = "\n".join(lines[i:])
    title_col = db.columns[0] if db.columns else None
    for wanted in (title, file_title):
        for pos, row_index in enumerate(unmatched):
            if title_col is not None and db.rows[row_index][title_col].strip() == wanted:
                unmatched.pop(pos)
                row = db.rows[row_index]
                return rest, {k: row[k] for k in db.columns[1:]}
    return rest, parsed


def load_notion(path: Path, *, name: str | None = None, strict: bool = False,
                content_properties: tuple[str, ...] = ()) -> Dataset:
    stem = path.name[: -len(".zip")] if path.name.lower().endswith(".zip") else path.name
    return finalize_parts(name or stem, str(path), read_notion(path, content_properties=content_properties), strict=strict)
