"""Passwords come from the environment or a passfile, never from argv, MLflow, Optuna, logs or the workspace.

The end-to-end test plants a password (a PostgreSQL role that has one, given to every process in
``PGPASSWORD``; pg_hba here trusts 127.0.0.1, so it is never checked, only carried), runs the distributed
loop with it, feeds it once more inline in URLs (which must warn and redact), and then greps every store,
artifact and log for it.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

import pytest

from evolve.secrets import has_inline_password, redact_url, warn_inline_password

# ----------------------------------------------------------------------------------------------- units


@pytest.mark.parametrize("url, redacted", [
    ("postgresql+psycopg://evolve:S3cret@db:5432/optuna", "postgresql+psycopg://evolve:***@db:5432/optuna"),
    ("postgresql://evolve@db/optuna?password=S3cret&sslmode=require",
     "postgresql://evolve@db/optuna?password=***&sslmode=require"),
    ("http://user:S3cret@mlflow:5000", "http://user:***@mlflow:5000"),
    ("postgresql://evolve@db/optuna", "postgresql://evolve@db/optuna"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    (None, None),
])
def test_redact_url(url, redacted):
    assert redact_url(url) == redacted
    assert has_inline_password(url) == (url is not None and "S3cret" in url)


def test_warning_says_where_the_password_goes(caplog):
    with caplog.at_level(logging.WARNING, logger="evolve.secrets"):
        warn_inline_password("postgresql://evolve:S3cret@db/optuna", "storage URL")
        warn_inline_password("postgresql://evolve@db/optuna", "storage URL")
    assert len(caplog.records) == 1
    text = caplog.text
    assert "S3cret" not in text and "postgresql://evolve:***@db/optuna" in text
    assert "PGPASSWORD" in text and "passfile" in text


def test_every_entry_point_warns(caplog, tmp_path, monkeypatch):
    """Storage, cache URL and MLflow server backend warn before they connect (tracking: see the e2e test)."""
    from evolve.cache import EmbeddingCache
    from evolve.errors import StorageError
    from evolve.storage import open_storage
    from evolve.workspace import Workspace

    bad = "postgresql+psycopg://nobody:S3cret@127.0.0.1:1/none"
    with caplog.at_level(logging.WARNING):
        with pytest.raises(StorageError) as err:
            open_storage(bad)
        assert "S3cret" not in str(err.value)
        cache = EmbeddingCache.open(Workspace(tmp_path / "ws").ensure(), bad.replace("+psycopg", ""))
        assert cache.enabled and "S3cret" not in cache.store.location  # local tier goes on; remote unreachable
        cache.close()

        import subprocess as sp

        from evolve import _servers

        real_popen = sp.Popen

        class NoServer:  # no mlflow server: a process that exits at once; only the warning and argv are under test
            def __init__(self, cmd, **kw):
                NoServer.cmd, NoServer.env = cmd, kw.get("env", {})
                self._proc = real_popen([sys.executable, "-c", "raise SystemExit(1)"], start_new_session=True)
                self.pid = self._proc.pid
                self._proc.wait()

            def __getattr__(self, name):  # poll, wait, returncode: the exited process's
                return getattr(self._proc, name)

        monkeypatch.setattr(sp, "Popen", NoServer)
        from evolve.errors import BackendError

        with pytest.raises(BackendError):
            _servers.start_mlflow_server(bad, str(tmp_path / "art"))
    assert "S3cret" not in " ".join(NoServer.cmd) and NoServer.env["MLFLOW_BACKEND_STORE_URI"] == bad
    messages = [r.getMessage() for r in caplog.records if "inline password" in r.getMessage()]
    assert any(m.startswith("storage URL") for m in messages)
    assert any(m.startswith("cache URL") for m in messages)
    assert any(m.startswith("MLflow backend store URI") for m in messages)
    assert "S3cret" not in caplog.text


# ----------------------------------------------------------------------------------------------- end to end


def _cmdlines(seen: list[str], stop: threading.Event) -> None:
    """Sample every process's argv (what `ps` shows any user) while the loop runs."""
    while not stop.wait(0.3):
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    seen.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    pass


@pytest.mark.postgres
@pytest.mark.slow
def test_planted_password_never_leaks(tmp_path, cli, caplog):
    from test_distributed import (  # the PostgreSQL helpers and the warm cache of the distributed tests
        PG_HOST,
        PG_PORT,
        Databases,
        build_warm_cache,
        dump_database,
        make_workspace,
        pg_url,
        worker_args,
    )

    dbs = Databases()
    password = f"S3cr3t-{secrets.token_hex(8)}"
    role = dbs.create_role(password)
    server = None
    try:
        optuna_db, mlflow_db, cache_db = dbs.create(owner=role), dbs.create(owner=role), dbs.create(owner=role)
        ws = make_workspace(tmp_path, build_warm_cache(tmp_path))
        env = {"PGPASSWORD": password, "EVOLVE_CACHE_URL": pg_url(cache_db, role, "postgresql")}
        storage = pg_url(optuna_db, role)
        inline = f"postgresql+psycopg://{role}:{password}@{PG_HOST}:{PG_PORT}/{optuna_db}"

        # the shared record, given its backend URL with the password inline: it warns, and nothing leaks
        from evolve._servers import start_mlflow_server

        with caplog.at_level(logging.WARNING, logger="evolve.secrets"):
            server, tracking = start_mlflow_server(
                f"postgresql+psycopg://{role}:{password}@{PG_HOST}:{PG_PORT}/{mlflow_db}",
                str(tmp_path / "server-artifacts"), log_path=tmp_path / "server.log")
        assert "MLflow backend store URI" in caplog.text and password not in caplog.text

        argvs: list[str] = []
        stop = threading.Event()
        sampler = threading.Thread(target=_cmdlines, args=(argvs, stop), daemon=True)
        sampler.start()
        try:
            # a) `evolve run --workers 2` without --tracking-uri (a local MLflow server on the workspace store),
            #    storage password inline: it warns, and the workers do not get it in their argv
            night = cli("run", *worker_args(ws, "pw", 3), "--workers", "2", "--storage", inline, env=env,
                        timeout=420)
            # b) one more worker, password from PGPASSWORD, recorded by the PostgreSQL-backed server
            joined = cli("worker", *worker_args(ws, "pw", 5), "--storage", storage, "--tracking-uri", tracking,
                         env=env, timeout=300)
            # c) status with the inline URL
            status = cli("status", "--workspace", str(ws), "--study", "pw", "--storage", inline,
                         "--tracking-uri", tracking, env=env, timeout=300)
        finally:
            stop.set()
            sampler.join()
        assert night.returncode == 0, night.stdout[-2000:] + night.stderr[-4000:]
        assert joined.returncode == 0, joined.stderr[-4000:]
        assert status.returncode == 0, status.stderr[-4000:]
        for proc in (night, status):
            assert "inline password" in proc.stderr and "PGPASSWORD" in proc.stderr
            assert redact_url(inline) in proc.stderr.replace("\n", "")
        assert "inline password" not in joined.stderr

        # the local MLflow server of `--workers` recorded every trial, and the artifacts landed in the workspace
        import optuna
        from mlflow.tracking import MlflowClient

        st = optuna.load_study(study_name="pw", storage=storage)
        local = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
        exp = local.get_experiment_by_name("pw")
        trial_runs = local.search_runs([exp.experiment_id], filter_string="tags.evolve_kind = 'trial'")
        remote = MlflowClient(tracking_uri=tracking)
        later = remote.search_runs([remote.get_experiment_by_name("pw").experiment_id],
                                   filter_string="tags.evolve_kind = 'trial'")
        assert len(trial_runs) + len(later) == len(st.trials) >= 5 and len(later) >= 1
        evaluated = [r for r in trial_runs if "evolve.repeat_of_trial" not in r.data.tags]  # repeats log no files
        landed = {p.parts[-3] for p in (ws / "mlartifacts").rglob("per_query.tsv")}
        assert landed == {r.info.run_id for r in evaluated} and landed
        assert (ws / "mlflow-server.log").exists()
        spawned = [a for a in argvs if " worker " in a or "mlflow" in a or "uvicorn" in a]
        assert any("evolve worker" in a for a in spawned), "the sampler never saw a worker"

        # the grep: every store, artifact, log, output and argv
        secret_forms = [password, password.encode().hex()]
        haystacks = {
            "optuna db": dump_database(optuna_db),
            "mlflow db": dump_database(mlflow_db),
            "cache db": dump_database(cache_db),
            "argv of the workers and servers evolve started": "\n".join(spawned),
        }
        for name, proc in (("run --workers", night), ("worker", joined), ("status", status)):
            haystacks[f"{name} stdout"] = proc.stdout
            haystacks[f"{name} stderr"] = proc.stderr
        for folder in (ws, tmp_path / "server-artifacts"):
            for path in folder.rglob("*"):
                if path.is_file():
                    haystacks[str(path)] = path.read_bytes().decode("latin-1")
        haystacks["server.log"] = (tmp_path / "server.log").read_text(errors="replace")
        assert len(haystacks) > 20
        # the shared cache was opened through PGPASSWORD (its table exists; the warm local tier served every
        # vector, so nothing new had to be written behind it)
        assert "== public.evolve_vectors" in haystacks["cache db"]
        leaks = [name for name, text in haystacks.items() for form in secret_forms if form in text]
        assert not leaks, f"the planted password leaked into: {leaks}"
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        dbs.drop_all()
