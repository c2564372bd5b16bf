"""Writes Notion "Markdown & CSV" exports for tests, the way Notion lays them out.

- a page is ``<Title> <32-hex id>.md`` starting ``# <Title>``; its sub-pages sit in ``<Title> <id>/`` and, as
  in Notion, the page links to each of them (``[Child](Title%20id/Child%20id.md)``) unless ``child_links=False``;
- a database is a stub page ``<Name> <id>.md`` (title and a link to its CSV), ``<Name> <id>.csv`` (the view:
  ``view_rows`` rows), ``<Name> <id>_all.csv`` (every row; both CSVs UTF-8 with BOM, the title column first)
  and ``<Name> <id>/`` with one page per row, whose properties follow the title as ``Key: value`` lines;
- file names are truncated like Notion's (``file_title``), while the heading keeps the whole title;
- archives: a plain zip, ``Part-N`` zips inside an outer zip, NFD names (macOS), and entries written without the
  zip's UTF-8 flag (their UTF-8 or cp949 bytes then read as cp437).

Ids are deterministic (md5 of a key), so two exports of the same pages share ids.
"""

from __future__ import annotations

import csv
import hashlib
import io
import posixpath
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

__all__ = ["Page", "Database", "Row", "notion_id", "export_files", "write_folder", "write_zip", "write_part_zips"]


def notion_id(key: str) -> str:
    return hashlib.md5(key.encode("utf-8")).hexdigest()


@dataclass
class Row:
    title: str
    properties: dict[str, str]
    body: str = ""
    key: str | None = None
    has_page: bool = True
    file_title: str | None = None

    @property
    def id(self) -> str:
        return notion_id(self.key or "row:" + self.title)


@dataclass
class Database:
    title: str
    columns: list[str]
    rows: list[Row]
    view_rows: int | None = None
    key: str | None = None

    @property
    def id(self) -> str:
        return notion_id(self.key or "db:" + self.title)


@dataclass
class Page:
    title: str
    body: str = ""
    children: list[Page | Database] = field(default_factory=list)
    key: str | None = None
    file_title: str | None = None
    #: titles of other pages this page links to (relative links, as Notion writes them)
    links: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return notion_id(self.key or "page:" + self.title)


def _csv(columns: list[str], rows: list[Row]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([r.title, *(r.properties.get(c, "") for c in columns[1:])])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def export_files(roots: list[Page | Database], *, child_links: bool = True, prefix: str = "") -> dict[str, bytes]:
    """Relative path (``/``-separated, NFC) -> bytes of every file of the export."""
    where: dict[str, str] = {}  # title -> path of its .md

    def place(node, folder: str) -> None:
        name = f"{node.file_title or node.title} {node.id}" if not isinstance(node, Database) else f"{node.title} {node.id}"
        where[node.title] = posixpath.join(folder, name + ".md")
        sub = posixpath.join(folder, name)
        if isinstance(node, Database):
            for r in node.rows:
                where[r.title] = posixpath.join(sub, f"{r.file_title or r.title} {r.id}.md")
        else:
            for c in node.children:
                place(c, sub)

    for root in roots:
        place(root, prefix)
    files: dict[str, bytes] = {}

    def link(frm: str, title: str) -> str:
        rel = posixpath.relpath(where[title], posixpath.dirname(frm) or ".")
        return f"[{title}]({quote(rel)})"

    def write(node) -> None:
        path = where[node.title]
        if isinstance(node, Database):
            csv_base = path[: -len(".md")]
            files[path] = f"# {node.title}\n\n[{node.title}]({quote(posixpath.basename(csv_base))}.csv)\n".encode()
            files[csv_base + "_all.csv"] = _csv(node.columns, node.rows)
            files[csv_base + ".csv"] = _csv(node.columns, node.rows[: node.view_rows] if node.view_rows else node.rows)
            for r in node.rows:
                if not r.has_page:
                    continue
                props = "\n".join(f"{k}: {r.properties[k]}" for k in node.columns[1:] if r.properties.get(k))
                files[where[r.title]] = f"# {r.title}\n\n{props}\n\n{r.body}\n".encode()
            return
        parts = [f"# {node.title}", ""]
        if node.body:
            parts += [node.body, ""]
        if child_links:
            parts += [link(path, c.title) for c in node.children]
        parts += [link(path, t) for t in node.links]
        files[path] = ("\n".join(parts).rstrip() + "\n").encode()
        for c in node.children:
            write(c)

    for root in roots:
        write(root)
    return files


def _nfd(name: str) -> str:
    return unicodedata.normalize("NFD", name)


class _LegacyName(zipfile.ZipInfo):
    """An entry whose name bytes are written as given, without the UTF-8 flag (old or Windows archivers)."""

    raw: bytes = b""

    def _encodeFilenameFlags(self):  # noqa: N802 (zipfile's name)
        return self.raw, self.flag_bits & ~0x800


def write_zip(files: dict[str, bytes], dest: Path | io.BytesIO, *, nfd: bool = False,
              legacy: dict[str, str] | None = None) -> Path | io.BytesIO:
    """A zip of ``files``; names NFD with ``nfd``; ``legacy`` maps a name to the encoding its bytes are written in
    without the UTF-8 flag (``utf-8`` as Notion's exporter does, ``cp949`` as Korean Windows does)."""
    legacy = legacy or {}
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in sorted(files.items()):
            shown = _nfd(name) if nfd else name
            if name in legacy:
                info = _LegacyName(shown.encode(legacy[name]).decode("cp437"), date_time=(2024, 5, 1, 9, 0, 0))
                info.raw = shown.encode(legacy[name])
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data)
            else:
                zf.writestr(zipfile.ZipInfo(shown, date_time=(2024, 5, 1, 9, 0, 0)), data,
                            compress_type=zipfile.ZIP_DEFLATED)
    return dest


def write_part_zips(files: dict[str, bytes], dest: Path, *, n_parts: int = 2, legacy: dict[str, str] | None = None,
                    export: str = "Export-5c1e4f2a-9b7d-4e3a-8f61-2d0c9a7b3e10") -> Path:
    """Notion's large-export layout: the zip ``dest`` holds ``<export>-Part-1.zip`` … ``-Part-N.zip``; each part
    holds a share of the files, all in the same tree (together they are one export)."""
    names = sorted(files)
    with zipfile.ZipFile(dest, "w") as outer:
        for k in range(n_parts):
            share = {n: files[n] for i, n in enumerate(names) if i % n_parts == k}
            inner = write_zip(share, io.BytesIO(), legacy={n: e for n, e in (legacy or {}).items() if n in share})
            outer.writestr(f"{export}-Part-{k + 1}.zip", inner.getvalue())
    return dest


def write_folder(files: dict[str, bytes], dest: Path, *, nfd: bool = False) -> Path:
    for name, data in files.items():
        p = dest / (_nfd(name) if nfd else name)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return dest
