"""Nothing half-written, nothing lost (issue 19, defects 7 and 8).

* A gold folder rewritten by a real subprocess that is SIGKILLed at every step of the swap (before and after each
  rename it makes) is, at the next open, the old folder or the new one, whole; the next write then keeps it.
* Durability against power cuts cannot be simulated here. What can be observed is the order of system calls:
  after every rename (and every file creation) the folder holding the name is ``fsync``ed. The tests record
  ``os.open`` / ``os.fsync`` / ``os.replace`` / ``os.rename`` calls and check that order; that is all they show.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

OLD = ({"a": "reviewed by a person", "b": "비밀번호 재설정"}, {"a": {"d1": 2}, "b": {"d2": 1}})
NEW = ({"a": "reviewed by a person", "b": "비밀번호 재설정", "c": "a new question"},
       {"a": {"d1": 3}, "b": {"d2": 1}, "c": {"d9": 1}})

#: the writer, killed with SIGKILL just before or just after its k-th rename (os.rename or os.replace, which
#: Path.rename/replace and shutil use too): the kill falls on every step of whatever swap the code does
KILLED_WRITER = textwrap.dedent("""
    import json, os, signal, sys
    k, when, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    queries, qrels = json.loads(sys.argv[4])
    from evolve.gold import write_gold
    count = [0]
    def wrap(real):
        def renamed(*args, **kwargs):
            count[0] += 1
            if count[0] == k and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = real(*args, **kwargs)
            if count[0] == k and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return renamed
    os.rename, os.replace = wrap(os.rename), wrap(os.replace)
    write_gold(out, queries, qrels, extra_files={"NOTES.md": "new notes"}, keep_extra=True)
    print(count[0])
""")


def _write_killed(out: Path, k: int, when: str, content) -> subprocess.CompletedProcess:
    import json

    return subprocess.run([sys.executable, "-c", KILLED_WRITER, str(k), when, str(out), json.dumps(content)],
                          capture_output=True, text=True, timeout=120)


def _content(gold):
    return gold.queries, gold.qrels


def test_a_gold_folder_survives_a_kill_at_every_step_of_its_swap(tmp_path):
    """Defect 7: a kill between the old swap's two renames left no folder; the next write then deleted the stale
    copy and orphaned the new one. Now: killed before its first rename, the writer changed nothing (the old
    folder); killed at or after it, the new folder is complete and wins (roll forward). Either way the folder is
    there and whole at the next open, a write after it builds on it, and no leftovers stay beside it."""
    from evolve.gold import read_gold, write_gold

    cases, leftovers, k = [], {}, 1
    while True:
        for when in ("before", "after"):
            base = tmp_path / f"k{k}-{when}"
            out = base / "gold"
            write_gold(out, *OLD, extra_files={"README.md": "reviewers' notes"})
            proc = _write_killed(out, k, when, NEW)
            if proc.returncode == 0:  # fewer than k renames: every step was covered
                assert when == "before" and int(proc.stdout) == k - 1, proc.stdout
                break
            assert proc.returncode == -9, (k, when, proc.returncode, proc.stderr[-2000:])
            gold = read_gold(out)  # the next open: recovers
            expected = OLD if (k, when) == (1, "before") else NEW
            assert _content(gold) == expected, (k, when, _content(gold))
            assert (out / "README.md").read_text() == "reviewers' notes"  # carried over by keep_extra
            # the next write (an import: read, change, write) builds on what the open found
            queries, qrels = dict(gold.queries), {q: dict(d) for q, d in gold.qrels.items()}
            queries["z"], qrels["z"] = "added after the crash", {"d7": 1}
            write_gold(out, queries, qrels, keep_extra=True)
            after = read_gold(out)
            assert after.queries == queries and after.qrels == qrels, (k, when)
            leftovers[k, when] = sorted(p.name for p in base.iterdir() if p.name != "gold")
            cases.append((k, when))
        else:
            k += 1
            continue
        break
    assert len(cases) >= 6, cases  # a publish, a move aside and a swap, each killed before and after
    assert not any(leftovers.values()), leftovers


def test_the_earlier_swaps_window_is_recovered(tmp_path):
    """A folder lost in the window of the earlier two-rename swap (the folder moved to ``.N.old-XXXX``, the new
    one never renamed in) is put back at the next open instead of being deleted by the next write."""
    from evolve.gold import is_gold_folder, read_gold, write_gold

    out = write_gold(tmp_path / "gold", *OLD)
    os.rename(out, tmp_path / ".gold.old-x1y2z3")
    (tmp_path / ".gold.tmp-a1b2c3").mkdir()  # the orphaned, possibly partial new folder: left alone
    assert is_gold_folder(out)
    assert _content(read_gold(out)) == OLD
    write_gold(out, *NEW)
    assert _content(read_gold(out)) == NEW
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gold.tmp-a1b2c3", "gold"]


# ------------------------------------------------------------------------------------------ fsync order (defect 8)
class Syscalls:
    """Records the calls the tests check the order of; every call goes through to the real one."""

    def __init__(self, monkeypatch):
        self.events: list[tuple[str, str]] = []
        self.fds: dict[int, str] = {}
        real_open, real_fsync, real_replace, real_rename = os.open, os.fsync, os.replace, os.rename

        def opened(path, flags, *args, **kwargs):
            fd = real_open(path, flags, *args, **kwargs)
            self.fds[fd] = os.path.abspath(os.fspath(path))
            self.events.append(("open", self.fds[fd]))
            return fd

        def fsynced(fd):
            fd_num = fd if isinstance(fd, int) else fd.fileno()
            self.events.append(("fsync", self.fds.get(fd_num, f"fd {fd_num}")))
            return real_fsync(fd)

        def moved(kind, real):
            def call(src, dst, *args, **kwargs):
                self.events.append((kind, os.path.abspath(os.fspath(dst))))
                return real(src, dst, *args, **kwargs)
            return call

        monkeypatch.setattr(os, "open", opened)
        monkeypatch.setattr(os, "fsync", fsynced)
        monkeypatch.setattr(os, "replace", moved("replace", real_replace))
        monkeypatch.setattr(os, "rename", moved("rename", real_rename))

    def synced_after(self, index: int, folder: Path) -> bool:
        """Was ``folder`` (opened as a directory) fsynced after event ``index``?"""
        return ("fsync", str(folder)) in self.events[index + 1:]

    def renames_into(self, folder: Path) -> list[int]:
        return [i for i, (kind, dst) in enumerate(self.events)
                if kind in ("replace", "rename") and Path(dst).parent == folder]


def test_atomic_writes_fsync_the_folder_after_the_rename(tmp_path, monkeypatch):
    """Every atomic write: the file is fsynced before its rename and its folder after it; folders it creates are
    synced in their parents."""
    from evolve._io import atomic_write_text

    calls = Syscalls(monkeypatch)
    target = tmp_path / "new" / "deeper" / "champion.yaml"
    atomic_write_text(target, "retrieval:\n  mode: sparse\n")
    renames = calls.renames_into(target.parent)
    assert len(renames) == 1 and calls.events[renames[0]][1] == str(target)
    assert any(kind == "fsync" and ".champion.yaml." in path for kind, path in calls.events[: renames[0]])
    assert calls.synced_after(renames[0], target.parent), calls.events
    assert ("fsync", str(tmp_path)) in calls.events and ("fsync", str(tmp_path / "new")) in calls.events


def test_the_look_log_is_created_durably(tmp_path, monkeypatch):
    """The holdout-look log's first line creates the file: its folder is fsynced after the write, so a power cut
    cannot take the file, and the looks it counts, away."""
    from evolve.looks import HoldoutLooks, first_look
    from evolve.workspace import Workspace

    looks = HoldoutLooks(Workspace(tmp_path / "ws"))
    calls = Syscalls(monkeypatch)
    looks.record(first_look(0.05, "f" * 64), candidate="trial 1")
    log = Path(looks.path)
    written = [i for i, ev in enumerate(calls.events) if ev == ("fsync", str(log))]
    assert written, calls.events
    assert calls.synced_after(written[0], log.parent), calls.events


def test_a_gold_swap_fsyncs_the_folder_after_every_rename(tmp_path, monkeypatch):
    from evolve.gold import write_gold

    write_gold(tmp_path / "gold", *OLD)
    calls = Syscalls(monkeypatch)
    write_gold(tmp_path / "gold", *NEW)
    renames = calls.renames_into(tmp_path)
    assert len(renames) >= 2, calls.events
    for i in renames:
        assert calls.synced_after(i, tmp_path), (calls.events[i], calls.events)
    first = renames[0]
    built = [path for kind, path in calls.events[:first] if kind == "fsync"]
    assert any(p.endswith("queries.jsonl") for p in built), built  # the files are on disk before they are published


def test_fsync_dir_tolerates_file_systems_that_refuse(tmp_path, monkeypatch):
    """A folder fsync refused with EINVAL (some network mounts) is not an error."""
    import errno

    from evolve._io import fsync_dir

    def refuse(fd):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "fsync", refuse)
    fsync_dir(tmp_path)
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError):
        fsync_dir(tmp_path)
