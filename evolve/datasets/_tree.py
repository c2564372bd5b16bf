"""The files of an export, from an unpacked folder or a zip (nested ``Part-N`` zips unpacked recursively).

Only the files a loader asks for (by suffix) are read; attachments stay unread. Every path component is NFC
(macOS zips and folders hold NFD names). A zip entry without the UTF-8 flag (bit 11) was decoded by
:mod:`zipfile` as cp437; its name is repaired by re-encoding to the original bytes and decoding them as UTF-8
(what Notion writes), else as cp949 (what Korean Windows archivers write), else left as cp437.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from evolve.datasets._types import nfc
from evolve.errors import DatasetError

__all__ = ["ExportFile", "read_export", "is_zip", "repair_name"]

_UTF8_FLAG = 0x800
#: an export split in parts: ``Export-<uuid>-Part-1.zip``
_PART = re.compile(r"(?i)part-\d+\.zip$")
_JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}
#: nested zips are spooled to disk past this size instead of held in memory
_SPOOL_BYTES = 64 << 20


@dataclass(frozen=True)
class ExportFile:
    """One file of an export: its path inside the export (NFC components), where it came from (for messages:
    ``/x/export.zip!Export-…-Part-1.zip!Wiki/Page.md``) and its bytes."""

    parts: tuple[str, ...]
    where: str
    data: bytes


def is_zip(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".zip"


def repair_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as its writer meant it (see the module docstring)."""
    name = info.filename
    if info.flag_bits & _UTF8_FLAG:
        return name
    try:
        raw = name.encode("cp437")
    except UnicodeEncodeError:  # decoded with another metadata_encoding: leave it
        return name
    for encoding in ("utf-8", "cp949"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return name


def _is_junk(parts: tuple[str, ...]) -> bool:
    return any(p == "__MACOSX" or p.startswith("._") or p.lower() in _JUNK_NAMES for p in parts)


def _split(name: str) -> tuple[str, ...]:
    return tuple(nfc(p) for p in name.replace("\\", "/").split("/") if p and p != ".")


def _zip_files(fileobj, where: str, suffixes: tuple[str, ...]) -> Iterator[ExportFile]:
    try:
        zf = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DatasetError(f"expected a zip archive, got a damaged or non-zip file ({err})", path=where) from None
    with zf:
        entries = []
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = repair_name(info)
            parts = _split(name)
            if parts and not _is_junk(parts):
                entries.append((info, name, parts))
        only_zips = bool(entries) and all(parts[-1].lower().endswith(".zip") for _, _, parts in entries)
        for info, name, parts in entries:
            inner = f"{where}!{name}"
            lower = parts[-1].lower()
            try:
                if lower.endswith(".zip") and (only_zips or _PART.search(lower)):
                    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
                        with zf.open(info) as src:
                            shutil.copyfileobj(src, spool)
                        spool.seek(0)
                        yield from _zip_files(spool, inner, suffixes)
                elif lower.endswith(suffixes):
                    yield ExportFile(parts, inner, zf.read(info))
            except DatasetError:
                raise
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as err:
                raise DatasetError(f"expected a readable zip entry, got {type(err).__name__}: {err}", path=inner) from None


def read_export(path: Path, suffixes: tuple[str, ...]) -> list[ExportFile]:
    """Every file ending in one of ``suffixes`` (lower case) under the folder or inside the zip ``path``, sorted
    by path. Inside a folder, zips named ``…Part-N.zip`` are unpacked as part of the export."""
    if is_zip(path):
        files = list(_zip_files(str(path), str(path), suffixes))
    elif path.is_dir():
        files = []
        for p in sorted(path.rglob("*")):
            if not p.is_file():
                continue
            parts = _split(p.relative_to(path).as_posix())
            if _is_junk(parts):
                continue
            lower = p.name.lower()
            if lower.endswith(".zip") and _PART.search(lower):
                files.extend(_zip_files(str(p), str(p), suffixes))
            elif lower.endswith(suffixes):
                files.append(ExportFile(parts, str(p), p.read_bytes()))
    else:
        raise DatasetError("expected a folder or a .zip file, got neither", path=str(path))
    return sorted(files, key=lambda f: f.parts)
