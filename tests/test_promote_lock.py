"""One champion change at a time, and a crash never separates a champion from its history record (issue 19,
defects 5 and 6). Real files, real subprocesses killed with SIGKILL at named points (tests/promote_hooks.py, a
test harness), a real flock held by this process."""

from __future__ import annotations

import fcntl
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO
from promote_hooks import _blocked_on_flock, promote_forced

HOOKS = str(REPO / "tests" / "promote_hooks.py")
A_DIM, B_DIM = 64, 128


def _cfg(dim: int | None):
    from evolve.config import apply_overrides, load_config

    return load_config() if dim is None else apply_overrides(load_config(), [f"embedding.dim={dim}"])


def _evolve(*args: str, **kw):
    return subprocess.run([sys.executable, "-m", "evolve", *args], capture_output=True, text=True, timeout=600, **kw)


def _hooked(point: str, *args: str):
    return subprocess.run(
        [sys.executable, HOOKS, "kill-before", point, *args], capture_output=True, text=True, timeout=600
    )


def _seen(ws) -> dict:
    """The champion every reader sees (serve, status, the next promotion) and the file itself, as dicts."""
    from evolve.config import load_config
    from evolve.promote import current_champion

    path = ws / "champion.yaml"
    return {
        "reader": current_champion(_ws(ws))[0].to_dict(),
        "file": load_config(path).to_dict() if path.exists() else _cfg(None).to_dict(),
    }


def _ws(path):
    from evolve.workspace import Workspace

    return Workspace(path)


@pytest.fixture
def ws_a(tmp_path):
    """A workspace whose champion A (embedding.dim 64) was promoted over the shipped default (no champion file)."""
    ws = tmp_path / "ws"
    _ws(ws).ensure()
    promote_forced(str(ws), A_DIM)
    assert (ws / "champion.yaml").exists()
    return ws


@pytest.mark.parametrize("point", ["champion.yaml", "0002-*-promotion.yaml"])
def test_a_promotion_killed_before_each_write_leaves_a_champion_rollback_undoes(ws_a, point):
    """B (dim 128) is promoted over A by a process SIGKILLed just before one of its two writes lands. Whatever
    landed, the champion readers see is the last recorded change (B only if B's record exists), and `evolve
    rollback` undoes exactly that: back to A if B was recorded, else back to the shipped default (A's own undo).
    Champion first and history second (the old order) fails at ``0002-*``: the file says B, no record does, and
    rollback undoes A instead."""
    from evolve.promote import history

    killed = _hooked(point, "promote", str(ws_a), str(B_DIM))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # history first: killed before champion.yaml, B is recorded; killed before its record, nothing of B landed
    b_recorded = point == "champion.yaml"
    assert any(r["config"] == _cfg(B_DIM).to_dict() for r in history(_ws(ws_a))) == b_recorded
    expected_now = _cfg(B_DIM if b_recorded else A_DIM).to_dict()
    assert _seen(ws_a)["reader"] == expected_now
    rb = _evolve("rollback", "--workspace", str(ws_a))
    assert rb.returncode == 0, rb.stderr[-2000:]
    expected_after = _cfg(A_DIM if b_recorded else None).to_dict()
    assert _seen(ws_a) == {"reader": expected_after, "file": expected_after}
    records = history(_ws(ws_a))
    assert [r["kind"] for r in records][-1] == "rollback"
    for before, after in zip(records, records[1:]):  # the chain of previous champions is unbroken
        assert after["previous_champion"] == before["config"]


@pytest.mark.parametrize("point", ["champion.yaml", "0003-*-rollback.yaml"])
def test_a_rollback_killed_before_each_write_leaves_a_champion_the_next_rollback_continues(ws_a, point):
    """A promoted, then B; `evolve rollback` (back to A) is SIGKILLed before one of its writes. Readers see A only if
    the rollback was recorded; the next rollback then undoes what the history's last record says."""
    from evolve.promote import history

    promote_forced(str(ws_a), B_DIM)
    killed = _hooked(point, "--", "rollback", "--workspace", str(ws_a))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    rolled = history(_ws(ws_a))[-1]["kind"] == "rollback"
    assert _seen(ws_a)["reader"] == _cfg(A_DIM if rolled else B_DIM).to_dict()
    rb = _evolve("rollback", "--workspace", str(ws_a))
    assert rb.returncode == 0, rb.stderr[-2000:]
    expected = _cfg(B_DIM if rolled else A_DIM).to_dict()  # a rollback of a rollback restores what it undid
    assert _seen(ws_a) == {"reader": expected, "file": expected}


def test_rollback_waits_for_the_champion_lock(ws_a):
    """This process holds ``<workspace>/champion.lock`` as a promotion would (read, test, write); `evolve rollback`
    must block on it (seen in /proc/locks, not guessed from timing) and roll back only once it is released."""
    from evolve.promote import history

    with open(ws_a / "champion.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        proc = subprocess.Popen(
            [sys.executable, "-m", "evolve", "rollback", "--workspace", str(ws_a)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 300
            while proc.poll() is None and not _blocked_on_flock(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert proc.poll() is None, f"rollback ran while the champion lock was held: {proc.communicate()}"
            assert _blocked_on_flock(proc.pid)
            assert len(history(_ws(ws_a))) == 1
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert [r["kind"] for r in history(_ws(ws_a))] == ["promotion", "rollback"]
    assert _seen(ws_a)["reader"] == _cfg(None).to_dict()


def test_a_champion_edited_by_hand_is_never_overwritten_by_recovery(ws_a):
    """Recovery finishes a change only when the champion file is still exactly what it was before that change:
    a file a person wrote since is theirs."""
    from evolve.config import config_to_yaml
    from evolve.promote import current_champion, recover

    hand = _cfg(256)
    (ws_a / "champion.yaml").write_text(config_to_yaml(hand))
    assert recover(_ws(ws_a)) is None
    assert current_champion(_ws(ws_a))[0].to_dict() == hand.to_dict()
    assert (ws_a / "champion.yaml").read_text() == config_to_yaml(hand)


def test_registering_the_champion_model_twice_keeps_the_alias(tmp_path):
    """`create_registered_model` raises RESOURCE_ALREADY_EXISTS the second time: only that is passed over, so the
    second promotion's version still gets the alias (real MLflow, SQLite store)."""
    from mlflow.tracking import MlflowClient

    from evolve.promote import mark_mlflow_champion

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("s", artifact_location=str(tmp_path / "art"))
    runs = [client.create_run(exp).info.run_id for _ in range(2)]
    for run in runs:
        assert mark_mlflow_champion(uri, run, "s") == "s-pipeline"
        assert client.get_model_version_by_alias("s-pipeline", "champion").run_id == run
