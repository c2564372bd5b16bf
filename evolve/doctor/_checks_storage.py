"""Where a night writes: the Optuna storage, MLflow tracking and the workspace (disk, embedding cache)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
import uuid

from evolve.doctor._base import Check, CheckResult
from evolve.errors import EvolveError

__all__ = ["OptunaStorageCheck", "MlflowCheck", "WorkspaceCheck", "CacheCheck", "db_version"]

GIB = float(1 << 30)
#: below this much free disk a night fails (cache writes, MLflow artifacts, faiss indexes)
MIN_FREE = 1 << 30


def _one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())[:300]


def db_version(engine) -> str:
    """'PostgreSQL 16.4 ...' or 'SQLite 3.45.1', asked of a SQLAlchemy engine."""
    from sqlalchemy import text

    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return "SQLite " + str(conn.execute(text("select sqlite_version()")).scalar())
        if engine.dialect.name == "postgresql":
            return " ".join(str(conn.execute(text("select version()")).scalar()).split()[:2])
        return f"{engine.dialect.name} " + str(conn.execute(text("select version()")).scalar())


class OptunaStorageCheck(Check):
    name = "storage.optuna"

    def run(self, ctx) -> CheckResult:
        from evolve.secrets import redact_url
        from evolve.storage import open_storage

        url = redact_url(ctx.storage_url)
        fix = ("start the database or correct --storage / EVOLVE_STORAGE (a password belongs in PGPASSWORD or a "
               "libpq passfile)")
        try:
            storage = open_storage(ctx.storage_url)
            studies = storage.get_all_studies()
            version = db_version(storage.engine) if hasattr(storage, "engine") else "?"
        except EvolveError as err:
            return self.fail(str(err), f"an Optuna storage reachable at {url}", fix)
        except Exception as err:  # noqa: BLE001 - sqlalchemy/driver errors: the user gets one line
            return self.fail(f"Optuna storage {url}: {_one_line(err)}", "a reachable database", fix)
        import optuna

        probe = f"evolve-doctor-probe-{uuid.uuid4().hex[:12]}"
        try:
            sid = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], probe)
            storage.delete_study(sid)
        except Exception as err:  # noqa: BLE001
            return self.fail(f"Optuna storage {url} ({version}) is readable but a probe study could not be written: "
                             f"{_one_line(err)}", "a writable storage",
                             "grant the night's database user CREATE/INSERT/DELETE on the Optuna tables")
        return self.ok(f"Optuna storage {url}: {version}, {len(studies)} stud{'y' if len(studies) == 1 else 'ies'}; "
                       f"a probe study written and removed", "reachable and writable", version=version,
                       studies=len(studies))


class MlflowCheck(Check):
    name = "tracking.mlflow"

    def run(self, ctx) -> CheckResult:
        from evolve.secrets import redact_url
        from evolve.tracking import _quiet_mlflow

        uri = ctx.tracking_uri
        shown = redact_url(uri)
        fix = "start the MLflow server or correct --tracking-uri / EVOLVE_TRACKING_URI"
        _quiet_mlflow()
        # one try per request within --timeout (MLflow's REST client would retry for minutes)
        http = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, int(ctx.timeout)))}
        saved = {k: os.environ.get(k) for k in http}
        os.environ.update(http)
        try:
            return self._check(ctx, client_uri=uri, shown=shown, fix=fix)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def _check(self, ctx, *, client_uri: str, shown: str, fix: str) -> CheckResult:
        uri = client_uri
        try:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=uri)
            exps = client.search_experiments(max_results=1000)
            version = self._version(uri)
        except Exception as err:  # noqa: BLE001 - mlflow raises many types; one line
            return self.fail(f"MLflow tracking {shown}: {_one_line(err)}", "reachable tracking", fix)
        try:  # a write that adds nothing: a tag on the Default experiment (else on evolve-doctor)
            exp = client.get_experiment_by_name("Default") or client.get_experiment_by_name("evolve-doctor")
            exp_id = exp.experiment_id if exp else client.create_experiment("evolve-doctor")
            client.set_experiment_tag(exp_id, "evolve.doctor.checked_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        except Exception as err:  # noqa: BLE001
            return self.fail(f"MLflow tracking {shown} ({version}) is readable but an experiment tag could not be "
                             f"written: {_one_line(err)}", "writable tracking",
                             "give the night's user write access to the tracking store")
        return self.ok(f"MLflow tracking {shown}: {version}, {len(exps)} experiment(s); a tag written",
                       "reachable and writable", version=version, experiments=len(exps))

    @staticmethod
    def _version(uri: str) -> str:
        import mlflow

        client_v = f"mlflow {mlflow.__version__}"
        if uri.startswith(("http://", "https://")):
            import httpx

            try:
                r = httpx.get(uri.rstrip("/") + "/version", timeout=5.0)
                return f"{client_v}, server {r.text.strip()[:40]}" if r.status_code == 200 else client_v
            except httpx.HTTPError:
                return client_v
        if uri.startswith(("sqlite:", "postgresql", "mysql")):
            from sqlalchemy import create_engine

            engine = create_engine(uri)
            try:
                return f"{client_v}, {db_version(engine)}"
            finally:
                engine.dispose()
        return client_v


class WorkspaceCheck(Check):
    name = "workspace"

    def run(self, ctx) -> CheckResult:
        ws = ctx.workspace
        try:
            ws.ensure()
        except EvolveError as err:
            return self.fail(str(err), "a writable folder", f"create {ws.path} writable for the night's user")
        free = shutil.disk_usage(ws.path).free
        cache = sum(p.stat().st_size for p in ws.cache_path.parent.glob("*") if p.is_file()) \
            if ws.cache_path.parent.is_dir() else 0
        found = f"workspace {ws.path} writable; {free / GIB:.1f} GiB free on its disk, cache {cache / GIB:.2f} GiB"
        details = {"path": str(ws.path), "free_bytes": free, "cache_bytes": cache}
        if free < MIN_FREE:
            return self.fail(found, f"at least {MIN_FREE / GIB:.0f} GiB free", "free disk space, or "
                             "`evolve cache prune --max-size ...`", **details)
        if free < cache:
            return self.warn(found, "free space at least the cache's size (a night with new chunkings can grow it "
                             "that much)", "free disk space, or `evolve cache prune --max-size ...`", **details)
        return self.ok(found, "writable, free space above the cache's size", **details)


class CacheCheck(Check):
    """The embedding cache reads (opened read-only: the doctor never quarantines or rewrites it)."""

    name = "workspace.cache"

    def run(self, ctx) -> CheckResult:
        path = ctx.workspace.cache_path
        if not path.exists():
            return self.ok(f"no embedding cache yet at {path}", "none, or a readable one (the night creates it)")
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
                n = con.execute("select count(*) from entries").fetchone()[0] if "entries" in tables else 0
                if n:
                    con.execute("select * from entries limit 1").fetchone()
            finally:
                con.close()
        except sqlite3.Error as err:
            return self.fail(f"embedding cache {path}: {_one_line(err)}", "a readable SQLite cache",
                             "move it aside (the night starts a new one and embeds again) or restore it",
                             path=str(path))
        if not os.access(path, os.W_OK):
            return self.fail(f"embedding cache {path} ({n} vectors) is read-only for this user", "a writable cache",
                             f"chown it to the night's user (NixOS: evolve) or chmod u+w {path}", entries=n)
        return self.ok(f"embedding cache {path}: {n} vectors, readable", "a readable cache", entries=n)
