"""Replacing a whole folder crash-safely: build beside it, publish, swap, and recover at the next open.

A folder ``P/N`` is rewritten in steps, each one rename, each made durable (file and folder ``fsync``):

1. **build**: everything is written into ``P/.N.build-<pid>-XXXX`` (files fsynced, then the folder);
2. **ready**: ``.N.build-XXXX`` -> ``.N.new``: from here on the new folder is complete and will win;
3. **aside**: ``N`` -> ``.N.old`` (when there is an ``N``);
4. **swap**: ``.N.new`` -> ``N``;
5. **clean**: ``.N.old`` is removed.

A process killed at any moment leaves one of these states, and :func:`recover` (run by every writer before it
starts and by every reader that finds leftovers) completes it: a ``.N.build-<pid>-*`` whose process is gone is
unfinished work and is removed; a ``.N.new`` is complete and is swapped in (roll forward: the last complete write wins, and ``N`` never
goes missing for good); a ``.N.old`` beside an ``N`` is removed, one without an ``N`` (and without a ``.N.new``)
is put back. So a reader finds the old folder or the new one, never a half-written or a lost one; the most a
kill loses is the write in flight before it reached step 2.

Writers and recovery hold an ``flock`` on ``P``: two writers, or a writer and a recovering reader, never
interleave their renames. Folders left by the earlier two-rename swap (``.N.old-XXXX``) are put back when ``N``
is missing, and otherwise left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from evolve._io import ensure_dir, fsync_dir

__all__ = ["build_dir", "folder_lock", "recover", "swap_into_place"]

log = logging.getLogger("evolve.gold")


def _names(out: Path) -> tuple[Path, Path]:
    return out.parent / f".{out.name}.new", out.parent / f".{out.name}.old"


def _leftovers(out: Path) -> list[Path]:
    new, old = _names(out)
    found = [p for p in (new, old) if os.path.lexists(p)]
    found += [b for b in sorted(out.parent.glob(f".{out.name}.build-*")) if not _owner_alive(b)]
    if not out.exists():
        found += sorted(out.parent.glob(f".{out.name}.old-*"))  # the earlier swap's window
    return found


@contextlib.contextmanager
def folder_lock(out: Path):
    """Hold an exclusive ``flock`` on the parent folder ``P`` for a write or a recovery of folder ``out`` (the
    folder itself is what gets renamed, so the lock is on what stays: no lock file is left beside it)."""
    import fcntl

    ensure_dir(out.parent)
    fd = os.open(out.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _rmtree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _owner_alive(build: Path) -> bool:
    """Is the process that is building ``.N.build-<pid>-XXXX`` still running? (A reused pid only leaves a dead
    build in place a while longer; it never removes a live one.)"""
    try:
        pid = int(build.name.rsplit(".build-", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rename(src: Path, dst: Path) -> None:
    os.rename(src, dst)
    fsync_dir(dst.parent)


def _recover_locked(out: Path) -> str | None:
    """Complete whatever a killed writer left (the lock is held). Returns what was done, or None."""
    new, old = _names(out)
    done = []
    for build in out.parent.glob(f".{out.name}.build-*"):
        if not _owner_alive(build):
            _rmtree(build)
            done.append(f"removed the unfinished {build.name}")
    if new.exists():
        if out.exists():
            if old.exists():
                _rmtree(old)
            _rename(out, old)
        _rename(new, out)
        done.append(f"completed the swap of {new.name}")
    if old.exists():
        if out.exists():
            _rmtree(old)
        else:
            _rename(old, out)
            done.append(f"put {old.name} back")
    if not out.exists():
        legacy = sorted(out.parent.glob(f".{out.name}.old-*"), key=lambda p: p.stat().st_mtime)
        if legacy:
            _rename(legacy[-1], out)
            done.append(f"put {legacy[-1].name} back")
    if done:
        fsync_dir(out.parent)
    return "; ".join(done) or None


def recover(out: str | os.PathLike) -> str | None:
    """Complete an interrupted swap of folder ``out`` (see the module docstring). Cheap when there is nothing to
    do (no lock taken). A folder in a place this process cannot write is left as it is (one warning). Returns
    what was done."""
    out = Path(out).expanduser().absolute()
    if not out.parent.is_dir() or not _leftovers(out):
        return None
    try:
        with folder_lock(out):
            done = _recover_locked(out)
    except OSError as err:  # a read-only place: read what is there, and say what could not be finished
        log.warning("gold folder %s: an interrupted write could not be recovered here (%s)", out, err)
        return None
    if done:
        log.warning("gold folder %s: an interrupted write was recovered (%s)", out, done)
    return done


def build_dir(out: Path) -> Path:
    """A new, empty folder beside ``out`` to build its next version in."""
    ensure_dir(out.parent)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.build-{os.getpid()}-", dir=out.parent))


def _fsync_tree(root: Path) -> None:
    """fsync every file and folder under ``root`` (files first, then their folders, deepest first)."""
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(folder)


def swap_into_place(build: Path, out: Path) -> None:
    """Publish the finished ``build`` folder as ``out`` (steps 2 to 5 of the module docstring), under the lock."""
    new, old = _names(out)
    _fsync_tree(build)
    with folder_lock(out):
        _recover_locked(out)  # a writer killed earlier: finish its swap before this one starts
        _rename(build, new)  # ready: complete, and will win from here on
        if out.exists():
            _rename(out, old)  # aside
        _rename(new, out)  # swap
        if old.exists():
            _rmtree(old)  # clean
            fsync_dir(out.parent)
