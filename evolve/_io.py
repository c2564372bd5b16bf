"""Durable file writes: a temp file in the same folder, fsync, rename, then fsync the folder.

A rename is only durable once the folder that holds the new name is on disk: without ``fsync`` of the
directory, a power cut after :func:`os.replace` can bring back the old file (a promotion reverts) or lose a file
just created (the holdout-look log, and the looks spent with it). Every function here syncs the file before the
rename and the folder after it; :func:`ensure_dir` syncs each parent of a folder it creates.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "ensure_dir", "fsync_dir"]


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush folder ``path`` (its entries: names created, renamed or removed in it) to disk. A file system that
    cannot sync a folder (some network and FUSE mounts refuse with EINVAL) is left as it is."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as err:
        import errno

        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def ensure_dir(path: str | os.PathLike) -> Path:
    """``mkdir -p path``, durably: the parent of each folder it creates is synced, so the new folder survives a
    power cut with whatever is then written and synced in it."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    if not missing:
        return path
    path.mkdir(parents=True, exist_ok=True)
    for created in reversed(missing):
        fsync_dir(created.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
