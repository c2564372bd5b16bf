"""Derived files kept beside the embedding cache: persisted faiss indexes, BM25 term statistics.

Everything here can be recomputed from the cache's vectors or from the chunk texts; it is kept because
recomputing costs minutes at a million chunks (an HNSW graph, a corpus tokenisation). One folder per kind,
``<cache folder>/<kind>/``; one artefact is a data file ``<name>.bin`` and its sidecar ``<name>.json`` (what it
was built from, its size and blake2b digest). The sidecar is written last, so a data file without one is a write
that never finished.

* Writes are atomic (temporary file, then rename): a process killed at any moment leaves no half artefact.
* Every open verifies size and digest; a damaged artefact is removed with one warning and rebuilt by the caller.
* Last use is the sidecar's mtime, refreshed at most hourly when an artefact is served.
* Bounded: a write first evicts least-recently-used artefacts of its kind beyond ``max_bytes``, and is skipped
  (one warning) when it would leave less than :data:`RESERVE_BYTES` free on the disk.
* ``evolve cache prune`` removes them before any vector (they are cheaper to rebuild than embeddings), and
  ``evolve cache invalidate --model M`` removes those built from ``M``'s vectors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_MAX_BYTES", "KINDS", "RESERVE_BYTES", "Artefact", "DerivedStore", "derived_bytes"]

log = logging.getLogger("evolve.cache")

#: the derived kinds a cache folder may hold
KINDS = ("faiss", "bm25")
#: per kind, unless a caller says otherwise: about five HNSW graphs of a million 384-d chunks
DEFAULT_MAX_BYTES = 8 * 2**30
#: a write that would leave less than this free on the disk is skipped
RESERVE_BYTES = 1 * 2**30
_TOUCH_SECONDS = 3600
_STALE_TEMP_SECONDS = 24 * 3600
_SUFFIX = ".bin"


@dataclass(frozen=True)
class Artefact:
    name: str
    data: Path
    meta_path: Path
    size: int
    used: float
    meta: dict


def _digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


class DerivedStore:
    """The artefacts of one kind under ``root/kind`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike, kind: str, *, max_bytes: int | None = None):
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        self.dir = Path(root) / kind
        self.kind = kind
        self.max_bytes = DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
        self._warned_space = False

    # ------------------------------------------------------------------ reading
    def open(self, name: str) -> Artefact | None:
        """The verified artefact ``name``, or None (absent, unfinished, or damaged: then removed)."""
        data, meta_path = self.dir / f"{name}{_SUFFIX}", self.dir / f"{name}.json"
        try:
            meta = json.loads(meta_path.read_text())
            size = data.stat().st_size
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("size") != size or meta.get("blake2b") != _digest(data):
            log.warning("%s artefact %s is damaged (size or digest differs); removed, it will be rebuilt", self.kind, name)
            self.remove(name)
            return None
        used = meta_path.stat().st_mtime
        if time.time() - used > _TOUCH_SECONDS:
            try:
                os.utime(meta_path)
                used = time.time()
            except OSError:
                pass
        return Artefact(name, data, meta_path, size, used, meta)

    def artefacts(self) -> list[Artefact]:
        """Complete artefacts (unverified), least recently used first."""
        out = []
        if not self.dir.is_dir():
            return out
        for meta_path in self.dir.glob("*.json"):
            name = meta_path.name[: -len(".json")]
            data = self.dir / f"{name}{_SUFFIX}"
            try:
                meta = json.loads(meta_path.read_text())
                out.append(Artefact(name, data, meta_path, data.stat().st_size, meta_path.stat().st_mtime, meta))
            except (OSError, ValueError):
                continue
        return sorted(out, key=lambda a: (a.used, a.name))

    def total_bytes(self) -> int:
        return sum(a.size for a in self.artefacts())

    # ------------------------------------------------------------------ writing
    def save(self, name: str, write: Callable[[Path], None], meta: dict, *, expected_bytes: int) -> bool:
        """Write artefact ``name``: ``write(path)`` fills a temporary file that is then renamed into place.
        Returns whether it was saved (False: too little disk, or the write failed; the caller goes on without)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.evict(max(0, self.max_bytes - expected_bytes))
            free = shutil.disk_usage(self.dir).free
        except OSError as exc:
            log.warning("%s artefact %s not saved: %s", self.kind, name, exc)
            return False
        if free - expected_bytes < RESERVE_BYTES:
            if not self._warned_space:
                log.warning("%s artefacts not saved under %s: %d MB free, %d MB needed plus %d MB kept free",
                            self.kind, self.dir, free // 2**20, expected_bytes // 2**20, RESERVE_BYTES // 2**20)
                self._warned_space = True
            return False
        tmp = self.dir / f".{name}.{os.getpid()}.tmp"
        try:
            write(tmp)
            size = tmp.stat().st_size
            full = {**meta, "kind": self.kind, "size": size, "blake2b": _digest(tmp), "created": time.time()}
            os.replace(tmp, self.dir / f"{name}{_SUFFIX}")
            from evolve._io import atomic_write_text

            atomic_write_text(self.dir / f"{name}.json", json.dumps(full, sort_keys=True))
            return True
        except Exception as exc:  # disk trouble: the in-memory artefact still works
            log.warning("%s artefact %s not saved: %s", self.kind, name, " ".join(str(exc).split())[:200])
            return False
        finally:
            tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------ removing
    def remove(self, name: str) -> int:
        """Remove artefact ``name``; the bytes freed."""
        freed = 0
        for path in (self.dir / f"{name}.json", self.dir / f"{name}{_SUFFIX}"):  # sidecar first: never a bare file
            try:
                freed += path.stat().st_size
                path.unlink()
            except OSError:
                pass
        return freed

    def evict(self, max_bytes: int) -> tuple[int, int]:
        """Remove least-recently-used artefacts until at most ``max_bytes`` remain; (count, bytes) removed."""
        arts = self.artefacts()
        total = sum(a.size for a in arts)
        n = freed = 0
        for a in arts:
            if total <= max_bytes:
                break
            got = self.remove(a.name)
            total -= a.size
            n, freed = n + 1, freed + got
        return n, freed

    def remove_where(self, **match) -> tuple[int, int]:
        """Remove artefacts whose sidecar has all of ``match`` (e.g. ``model="m"``); (count, bytes)."""
        n = freed = 0
        for a in self.artefacts():
            if all(a.meta.get(k) == v for k, v in match.items()):
                freed += self.remove(a.name)
                n += 1
        return n, freed

    def clean(self, *, keep_version: str | None = None) -> tuple[int, int]:
        """Remove what no reader will open: folders and files of older layouts, data files without a sidecar,
        temporary files older than a day (younger ones may be another process's write in flight), and, when
        ``keep_version`` is given, artefacts whose sidecar names another ``version``; (count, bytes)."""
        if not self.dir.is_dir():
            return 0, 0
        n = freed = 0
        complete = {a.name for a in self.artefacts() if keep_version is None or a.meta.get("version") == keep_version}
        now = time.time()
        for path in self.dir.iterdir():
            name = path.name
            try:
                st = path.stat()
                if path.is_dir():
                    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                    shutil.rmtree(path)
                elif name.endswith(".tmp"):
                    if now - st.st_mtime < _STALE_TEMP_SECONDS:
                        continue
                    size = st.st_size
                    path.unlink()
                elif name.endswith(".json") and name[: -len(".json")] in complete:
                    continue
                elif name.endswith(_SUFFIX) and name[: -len(_SUFFIX)] in complete:
                    continue
                else:
                    size = st.st_size
                    path.unlink()
            except OSError:
                continue
            n, freed = n + 1, freed + size
        return n, freed


def derived_bytes(root: str | os.PathLike | None) -> int:
    """Bytes of every derived artefact under a cache folder."""
    if root is None:
        return 0
    return sum(DerivedStore(root, kind).total_bytes() for kind in KINDS)
