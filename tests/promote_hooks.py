"""A test harness (a stand-in for an unlucky schedule, not a part of evolve): runs a real evolve command in this
process with one hook installed around the real code, so that a race or a crash happens at a named point instead
of by timing.

    python tests/promote_hooks.py barrier DIR PARTIES -- ARGS...   # evolve ARGS, held after the champion is read
    python tests/promote_hooks.py kill-before GLOB -- ARGS...      # evolve ARGS, SIGKILLed before GLOB lands
    python tests/promote_hooks.py kill-before GLOB promote WS DIM  # evolve.promote.promote(), forced, embedding.dim=DIM

``barrier``: :func:`evolve.promote.current_champion` is wrapped; after its first call returns, this process writes
``DIR/<pid>.read`` and waits until each of the ``PARTIES`` processes (each writes ``DIR/<pid>.start`` when it starts)
has read too, or is provably excluded: blocked on an ``flock`` (a ``->`` line of ``/proc/locks``). So two
promotions that read the champion without a lock both read it before either writes; promotions that read it under
a lock are serialised by that lock, not by how fast each happened to be.

``kill-before``: :func:`os.replace` and :func:`os.unlink` are wrapped; the process SIGKILLs itself just before one
of them would put a file whose name matches ``GLOB`` (``fnmatch``) in place or remove it: every earlier write has
landed, that one and every later one has not.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import sys
import time
from pathlib import Path


def _blocked_on_flock(pid: int) -> bool:
    """Is ``pid`` waiting for an flock? ``/proc/locks`` lists waiters as ``N: -> FLOCK ADVISORY WRITE PID ...``."""
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if len(parts) > 5 and parts[1] == "->" and parts[2] == "FLOCK" and parts[5] == str(pid):
            return True
    return False


def install_barrier(folder: Path, parties: int, timeout: float = 600.0) -> None:
    import evolve.promote as promote

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{os.getpid()}.start").write_text("")
    real = promote.current_champion
    seen = []

    def held(workspace):
        out = real(workspace)
        if seen:
            return out
        seen.append(True)
        (folder / f"{os.getpid()}.read").write_text(out[1])
        deadline = time.monotonic() + timeout
        while True:
            others = [int(p.stem) for p in folder.glob("*.start") if int(p.stem) != os.getpid()]
            waiting = [pid for pid in others if not (folder / f"{pid}.read").exists() and not _blocked_on_flock(pid)]
            if len(others) + 1 >= parties and not waiting:
                return out
            if time.monotonic() > deadline:
                raise SystemExit(f"barrier: {len(others) + 1} of {parties} parties, still waiting for {waiting}")
            time.sleep(0.05)

    promote.current_champion = held


def install_kill_before(pattern: str) -> None:
    real_replace, real_unlink = os.replace, os.unlink

    def check(dst):
        if fnmatch.fnmatch(Path(dst).name, pattern):
            os.kill(os.getpid(), signal.SIGKILL)

    def replace(src, dst, *a, **kw):
        check(dst)
        return real_replace(src, dst, *a, **kw)

    def unlink(path, *a, **kw):
        check(path)
        return real_unlink(path, *a, **kw)

    os.replace, os.unlink = replace, unlink


def promote_forced(workspace: str, dim: int) -> None:
    """``promote()`` of the default config with ``embedding.dim=DIM``, forced (no evaluation: the writes are what
    is tested here)."""
    from evolve.config import apply_overrides, load_config
    from evolve.promote import Verdict, promote
    from evolve.workspace import Workspace

    cfg = apply_overrides(load_config(), [f"embedding.dim={dim}"])
    verdict = Verdict("ndcg@10", 0.5, 0.6, None, _a_look(), False)
    promote(
        Workspace(workspace),
        cfg,
        verdict,
        trial=dim,
        mlflow_run_id=None,
        study="hooks",
        holdout_fingerprint="fp",
        report_metrics=None,
        forced=True,
    )


def _a_look():
    """A look to name in the forced verdict (older Verdicts cannot word a reason without one); None where the look
    rule's state no longer has this shape (a Verdict then words its reason without it)."""
    from evolve.looks import LookBudget

    try:
        return LookBudget("fp", 10, 0.05, 0)
    except TypeError:
        return None


def main(argv: list[str]) -> int:
    mode, *rest = argv
    if mode == "barrier":
        install_barrier(Path(rest[0]), int(rest[1]))
        rest = rest[2:]
    elif mode == "kill-before":
        install_kill_before(rest[0])
        rest = rest[1:]
    else:
        raise SystemExit(f"expected barrier or kill-before, got {mode!r}")
    if rest[0] == "promote":
        promote_forced(rest[1], int(rest[2]))
        return 0
    assert rest[0] == "--", rest
    from evolve.cli import main as evolve_main

    return evolve_main(rest[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
