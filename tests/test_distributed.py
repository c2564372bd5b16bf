"""Distributed mode on the machine's real PostgreSQL: many workers, one study, a shared record and cache.

Every test makes its own throwaway databases (``evolve_test_<random>``) and drops them afterwards. Without a
reachable PostgreSQL the tests skip with the reason, except under ``CI=true``, where they fail.

The worker tests share one warm embedding cache (the tiny dense space of ``tests/data/space_small.yaml`` on a
120-document subset), so a trial measures the loop, not the embedder.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "tests" / "data" / "space_small.yaml"
SUBSET = 120
PG_HOST = os.environ.get("EVOLVE_TEST_PGHOST", "127.0.0.1")
PG_PORT = os.environ.get("EVOLVE_TEST_PGPORT", "5432")
PG_USER = os.environ.get("EVOLVE_TEST_PGUSER", "root")
EVOLVE = str(Path(sys.executable).with_name("evolve"))


# ----------------------------------------------------------------------------------------------- PostgreSQL


def pg_url(db: str, user: str = PG_USER, driver: str = "postgresql+psycopg") -> str:
    return f"{driver}://{user}@{PG_HOST}:{PG_PORT}/{db}"


def pg_admin():
    """An autocommit connection to the ``postgres`` database, or a skip (a failure under CI=true)."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the test extras install it
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have psycopg installed (pip install -e '.[test]')")
        pytest.skip("psycopg is not installed")
    try:
        return psycopg.connect(pg_url("postgres", driver="postgresql"), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        reason = " ".join(str(err).split())
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must have PostgreSQL at {PG_HOST}:{PG_PORT} (.ci/run starts it): {reason}")
        pytest.skip(f"PostgreSQL is unreachable at {PG_HOST}:{PG_PORT} (start it, or set EVOLVE_TEST_PGHOST): {reason}")


class Databases:
    """Throwaway databases, dropped (with their connections) at teardown."""

    def __init__(self):
        self.admin = pg_admin()
        self.names: list[str] = []
        self.roles: list[str] = []

    def create_role(self, password: str) -> str:
        role = f"evolve_pw_{secrets.token_hex(4)}"
        self.admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        self.roles.append(role)
        return role

    def create(self, owner: str | None = None) -> str:
        name = f"evolve_test_{secrets.token_hex(5)}"
        self.admin.execute(f"CREATE DATABASE {name}" + (f" OWNER {owner}" if owner else ""))
        self.names.append(name)
        return name

    def drop_all(self) -> None:
        for name in self.names:
            try:
                self.admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            except Exception:  # a leftover database is harmless; never hide the test's own failure
                pass
        for role in self.roles:
            try:
                self.admin.execute(f"DROP ROLE IF EXISTS {role}")
            except Exception:
                pass
        self.admin.close()


@pytest.fixture(scope="module")
def pg():
    dbs = Databases()
    yield dbs
    dbs.drop_all()


def dump_database(db: str) -> str:
    """Every row of every table as text (bytea as hex), for greps."""
    import psycopg

    out = []
    with psycopg.connect(pg_url(db, driver="postgresql"), autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'")]
        for t in tables:
            out.append(f"== {t}")
            out.extend(r[0] for r in conn.execute(f"SELECT x::text FROM {t} x"))
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------- shared setup


_WARM: dict[str, Path] = {}


def build_warm_cache(root: Path) -> Path:
    """An embedding cache holding every vector the tiny space needs on the 120-document subset (built once per
    process; test_secrets.py shares it).

    ``EVOLVE_TEST_WARM_CACHE=PATH`` keeps it between sessions (built once at PATH; keys are content hashes, so
    a kept file can only miss, never serve a wrong vector)."""
    if "path" in _WARM:
        return _WARM["path"]
    kept = os.environ.get("EVOLVE_TEST_WARM_CACHE")
    path = Path(kept) if kept else root / "warm-cache" / "embeddings.sqlite"
    if not (kept and path.exists()):
        path.parent.mkdir(parents=True, exist_ok=True)
        script = textwrap.dedent(f"""
            from evolve.cache import EmbeddingCache
            from evolve.config import load_config
            from evolve.datasets import load_dataset
            from evolve.embedders import EmbedderPool
            from evolve.pipeline import Pipeline

            ds = load_dataset("scifact").subset({SUBSET}, None)
            cache, pool = EmbeddingCache({str(path)!r}), EmbedderPool()
            for overrides in ([], ["chunking.strategy=tokens", "chunking.size=128", "chunking.overlap=16"]):
                pipe = Pipeline(load_config(None, overrides), ds, cache=cache, embedders=pool)
                pipe.prepare()
                pipe.embed_queries(sorted(ds.queries))
            pool.close()
            cache.close()
        """)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    _WARM["path"] = path
    return path


@pytest.fixture(scope="session")
def warm_cache(tmp_path_factory) -> Path:
    return build_warm_cache(tmp_path_factory.getbasetemp())


def make_workspace(root: Path, warm_cache: Path) -> Path:
    ws = root / "ws"
    (ws / "cache").mkdir(parents=True)
    shutil.copy(warm_cache, ws / "cache" / "embeddings.sqlite")
    return ws


def create_study(ws: Path, name: str, storage: str, *, heartbeat_interval: int = 10, grace_period: int = 60):
    """What ``evolve run --workers`` does before it starts workers: create the study once."""
    from evolve.cli._common import study_options
    from evolve.study import load_study_dataset, prepare_study

    opts = study_options(dataset_spec="scifact", n_trials=None, timeout=None, seed=None, search_space=str(SPACE),
                    overrides=None, objectives=None, split_seed=0, prune=False, subset=SUBSET,
                    heartbeat_interval=heartbeat_interval, grace_period=grace_period, workspace=str(ws),
                    study_name=name, storage_url=storage, tracking_uri=None)
    storage_, st, _ = prepare_study(opts, load_study_dataset(opts))
    assert st.study_name == name
    storage_.remove_session()
    storage_.engine.dispose()


def load(name: str, storage: str):
    import optuna

    return optuna.load_study(study_name=name, storage=optuna.storages.RDBStorage(storage))


def worker_args(ws: Path, study: str, trials: int) -> list[str]:
    return ["--dataset", "scifact", "--subset", str(SUBSET), "--search-space", str(SPACE), "--no-prune",
            "--workspace", str(ws), "--study", study, "--trials", str(trials)]


@pytest.fixture(scope="module")
def mlflow_pg(pg, tmp_path_factory):
    """An MLflow tracking server on PostgreSQL, bound to 127.0.0.1 on a free port: the shared record."""
    from evolve._servers import start_mlflow_server, stop_server

    db = pg.create()
    root = tmp_path_factory.mktemp("mlflow")
    proc, url = start_mlflow_server(pg_url(db), str(root / "artifacts"), log_path=root / "server.log")
    yield {"url": url, "db": db, "artifacts": root / "artifacts", "log": root / "server.log"}
    stop_server(proc, grace=5)


def mlflow_trial_runs(tracking_uri: str, study: str) -> dict[int, list]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(study)
    assert exp is not None, f"no MLflow experiment for study {study}"
    runs = client.search_runs([exp.experiment_id], filter_string="tags.evolve_kind = 'trial'", max_results=5000)
    by_number: dict[int, list] = {}
    for r in runs:
        by_number.setdefault(int(r.data.tags["optuna_trial_number"]), []).append(r)
    return by_number


def assert_optuna_matches_mlflow(study, tracking_uri: str) -> dict[int, list]:
    """Every Optuna trial has exactly one MLflow child run, in the matching state."""
    from optuna.trial import TrialState

    expected = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "FINISHED", TrialState.FAIL: "FAILED"}
    runs = mlflow_trial_runs(tracking_uri, study.study_name)
    trials = study.get_trials(deepcopy=False)
    assert sorted(runs) == [t.number for t in trials], (sorted(runs), [t.number for t in trials])
    for t in trials:
        assert len(runs[t.number]) == 1, f"trial {t.number} has {len(runs[t.number])} MLflow runs"
        run = runs[t.number][0]
        assert t.state in expected, f"trial {t.number} left {t.state.name}"
        assert run.info.status == expected[t.state], (t.number, t.state.name, run.info.status)
        assert t.user_attrs.get("evolve.mlflow_run_id") == run.info.run_id
    return runs


def assert_no_double_runs(study) -> None:
    """Apart from retries (same params on purpose) and repeats (answered from the earlier result, not run),
    no effective config (evolve.study._strategy.effective_key) ran twice."""
    from optuna.trial import TrialState

    seen: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if "evolve.retry_of" in t.user_attrs or "evolve.repeat_of" in t.user_attrs:
            continue
        key = t.user_attrs.get("evolve.effective_key") or json.dumps(t.params, sort_keys=True)
        assert key not in seen, f"trials {seen[key]} and {t.number} both ran {key}"
        seen[key] = t.number
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if "evolve.repeat_of" in t.user_attrs:
            first = study.trials[t.user_attrs["evolve.repeat_of"]]
            key = t.user_attrs.get("evolve.effective_key")
            same = key is not None and first.user_attrs.get("evolve.effective_key") == key
            assert same and first.state == TrialState.COMPLETE and first.values == t.values


# ----------------------------------------------------------------------------------------------- 1 and 3


@pytest.mark.slow
def test_three_workers_one_study_shared_record(pg, mlflow_pg, warm_cache, tmp_path, cli):
    """`evolve run --gpus 0,1,2 --trials 12` (one worker per GPU id) on PostgreSQL, recorded by an MLflow server on
    PostgreSQL. On this CPU machine the workers embed on the CPU; what is under test is that each worker sees
    exactly one GPU id in CUDA_VISIBLE_DEVICES."""
    from optuna.trial import TrialState

    ws = make_workspace(tmp_path, warm_cache)
    storage = pg_url(pg.create())
    study_name = "three"
    proc = cli("run", *worker_args(ws, study_name, 12), "--gpus", "0,1,2", "--seed", "1", "--storage", storage,
               "--tracking-uri", mlflow_pg["url"], timeout=420)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "3 worker(s) finished with exit codes [0, 0, 0]" in proc.stdout

    st = load(study_name, storage)
    trials = st.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    # repeats of a done config are free (issue 21): 12 counted trials, at most workers - 1 overshoot
    n_complete = states.count(TrialState.COMPLETE)
    n_counted = sum(t.state == TrialState.COMPLETE and "evolve.repeat_of" not in t.user_attrs for t in trials)
    assert 12 <= n_counted <= 14, [s.name for s in states]
    assert [t.number for t in trials] == list(range(len(trials)))  # no trial lost
    assert all(s == TrialState.COMPLETE for s in states), [s.name for s in states]
    assert_no_double_runs(st)
    pids = {t.user_attrs["evolve.pid"] for t in trials}
    assert len(pids) >= 2, f"expected the workers to share the study, got trials from pids {pids}"
    # one GPU per worker: every trial ran where CUDA_VISIBLE_DEVICES named a single id, the same id per process
    gpu_of = {}
    for t in trials:
        gpu_of.setdefault(t.user_attrs["evolve.pid"], set()).add(t.user_attrs["evolve.cuda_visible_devices"])
    assert all(len(ids) == 1 and next(iter(ids)) in {"0", "1", "2"} for ids in gpu_of.values()), gpu_of
    assert len({next(iter(ids)) for ids in gpu_of.values()}) == len(gpu_of), f"two workers shared a GPU: {gpu_of}"

    # 3: the MLflow server on PostgreSQL holds every run, and agrees with Optuna
    runs = assert_optuna_matches_mlflow(st, mlflow_pg["url"])
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_pg["url"])
    exp = client.get_experiment_by_name(study_name)
    parents = client.search_runs([exp.experiment_id], filter_string="tags.evolve_kind = 'worker'")
    assert len(parents) == 3 and all(p.info.status == "FINISHED" for p in parents)
    assert {r[0].data.tags["mlflow.parentRunId"] for r in runs.values()} <= {p.info.run_id for p in parents}
    import psycopg

    with psycopg.connect(pg_url(mlflow_pg["db"], driver="postgresql"), autocommit=True) as conn:
        stored = {r[0] for r in conn.execute("SELECT run_uuid FROM runs WHERE experiment_id = %s",
                                             (int(exp.experiment_id),))}
    assert stored == {r[0].info.run_id for r in runs.values()} | {p.info.run_id for p in parents}
    # trial artifacts went through the server into its artifacts destination
    some = runs[0][0]
    assert [a.path for a in client.list_artifacts(some.info.run_id)], "trial 0 has no artifacts"
    assert any(mlflow_pg["artifacts"].rglob("per_query.tsv"))

    status = cli("status", "--workspace", str(ws), "--study", study_name, "--storage", storage,
                 "--tracking-uri", mlflow_pg["url"], timeout=300)
    assert status.returncode == 0, status.stderr[-3000:]
    assert f"study {study_name}: top 10" in status.stdout
    assert f"COMPLETE {n_complete}" in status.stdout
    assert f"MLflow trial runs by status: FINISHED {n_complete}" in status.stdout


# ----------------------------------------------------------------------------------------------- 2


@pytest.mark.slow
def test_killed_worker_trial_is_retried_elsewhere(pg, mlflow_pg, warm_cache, tmp_path):
    """SIGKILL one of three workers mid-trial: its trial fails by heartbeat, is retried with the same params
    and completed by another worker; no other trial fails; MLflow shows the killed attempt FAILED."""
    import optuna
    from optuna.trial import TrialState

    ws = make_workspace(tmp_path, warm_cache)
    storage = pg_url(pg.create())
    study_name = "killed"
    create_study(ws, study_name, storage, heartbeat_interval=1, grace_period=5)
    total = 10
    args = worker_args(ws, study_name, total) + ["--storage", storage, "--tracking-uri", mlflow_pg["url"],
                                                 "--heartbeat-interval", "1", "--grace-period", "5",
                                                 "--max-retry", "2"]
    procs = []
    for i in range(3):
        log = open(tmp_path / f"worker-{i}.log", "wb")
        procs.append(subprocess.Popen([EVOLVE, "worker", *args, "--seed", str(10 + i)], stdout=log,
                                      stderr=subprocess.STDOUT))
    victim = procs[0]
    watcher = optuna.storages.RDBStorage(storage)
    study_id = watcher.get_study_id_from_name(study_name)
    killed = None
    try:
        deadline = time.time() + 240
        while killed is None and time.time() < deadline:
            assert victim.poll() is None, (tmp_path / "worker-0.log").read_text()[-3000:]
            for t in watcher.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
                if t.user_attrs.get("evolve.pid") == victim.pid and t.user_attrs.get("evolve.mlflow_run_id"):
                    os.kill(victim.pid, signal.SIGKILL)
                    killed = t
                    break
            else:
                time.sleep(0.2)
        assert killed is not None, "the victim never owned a running trial"
        victim.wait(timeout=30)
        others = [p.wait(timeout=300) for p in procs[1:]]
        assert others == [0, 0], [(tmp_path / f"worker-{i}.log").read_text()[-3000:] for i in (1, 2)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    st = load(study_name, storage)
    trials = st.get_trials(deepcopy=False)
    dead = st.trials[killed.number]
    assert dead.state == TrialState.FAIL
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    assert failed == [killed.number], f"only the killed trial may fail, got {failed}"  # others never touched
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1, retries
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == dead.params
    assert retry.user_attrs["evolve.retry_of"] == killed.number
    assert retry.user_attrs["evolve.pid"] in {p.pid for p in procs[1:]}
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    assert_no_double_runs(st)
    runs = assert_optuna_matches_mlflow(st, mlflow_pg["url"])  # the killed attempt: FAILED, not RUNNING
    run = runs[killed.number][0]
    assert run.info.status == "FAILED"
    assert "heartbeat" in run.data.tags.get("evolve.error", "")
    assert runs[retry.number][0].data.tags["evolve.retry_of_trial_id"] == str(killed.number)


# ----------------------------------------------------------------------------------------------- 4


WRITER = textwrap.dedent("""
    import random, sys, time, zlib
    import numpy as np
    from evolve.cache import EmbeddingCache, PostgresStore, cache_key

    url, who, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    def vec(g, i):  # content-addressed: the same key always carries the same vector, whoever writes it
        return np.random.default_rng(zlib.crc32(f"{g}-{i}".encode())).standard_normal(64).astype(np.float32)
    keys = [("shared", i) for i in range(3000)] + [(who, i) for i in range(3000)]
    random.Random(who).shuffle(keys)
    cache = EmbeddingCache(PostgresStore(url))
    while time.time() < start:
        time.sleep(0.01)
    for lo in range(0, len(keys), 250):
        batch = keys[lo:lo + 250]
        ks = [cache_key("m", "document", f"{g}-{i}") for g, i in batch]
        found, damaged = cache.lookup(ks)
        assert damaged == 0
        cache.store_vectors(ks, np.stack([vec(g, i) for g, i in batch]), "m")
        found, damaged = cache.lookup(ks)
        assert damaged == 0 and set(found) == set(ks), (len(found), len(ks))
    cache.close()
    print("ok", who)
""")


def test_shared_cache_two_writers(pg, tmp_path):
    """Two processes write overlapping and disjoint keys into one PostgreSQL cache at once; afterwards every
    entry is there once, verifies, and carries the vector of its key."""
    import zlib

    import numpy as np

    from evolve.cache import EmbeddingCache, PostgresStore, cache_key

    url = pg_url(pg.create())
    PostgresStore(url).close()  # schema first, so both writers time the data, not the DDL
    start = time.time() + 4
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [subprocess.Popen([sys.executable, str(script), url, who, f"{start}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for who in ("a", "b")]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    store = PostgresStore(url)
    assert store.stats().entries == 3000 + 2 * 3000
    cache = EmbeddingCache(store)
    for group in ("shared", "a", "b"):
        ks = [cache_key("m", "document", f"{group}-{i}") for i in range(3000)]
        found, damaged = cache.lookup(ks)
        assert damaged == 0 and len(found) == 3000
        for i in range(3000):
            seed = zlib.crc32(f"{group}-{i}".encode())
            assert np.array_equal(found[ks[i]], np.random.default_rng(seed).standard_normal(64).astype(np.float32))
    cache.close()


# ----------------------------------------------------------------------------------------------- the store itself


def _entries(n: int, model: str = "m", dim: int = 8, tag: str = ""):
    import numpy as np

    from evolve.cache import Entry, cache_key
    from evolve.cache._cache import _checksum

    out = []
    for i in range(n):
        key = cache_key(model, "document", f"{tag}{i}")
        payload = np.full(dim, i, dtype=np.float32).tobytes()
        out.append(Entry(key, model, dim, payload, _checksum(key, dim, payload)))
    return out


def test_postgres_store_contract(pg):
    from evolve.cache import PostgresStore

    url = pg_url(pg.create())
    store = PostgresStore(url)
    assert store.location == pg_url(store.location.rsplit("/", 1)[1], driver="postgresql")
    a, b = _entries(1500, "m1"), _entries(700, "m2")
    store.put(a + b)
    store.put(a[:10])  # idempotent
    got = store.get([b"\0" * 32] + [e.key for e in a])
    assert len(got) == 1500 and got.positions.tolist() == list(range(1, 1501))
    assert got.entries() == a  # in the order asked, every field intact
    assert store.stats().entries == 2200
    assert store.invalidate("m2") == 700 and store.stats().entries == 1500
    store.delete([e.key for e in a[:500]])
    assert store.stats().entries == 1000
    # LRU: make a[500:600] the most recently used, prune to about their size
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("UPDATE evolve_vectors SET last_used = now() - interval '1 day'")
    store.get([e.key for e in a[500:600]])
    per = 32 + 32 + 2 + 48  # payload + key + model + overhead, as SQLiteStore counts
    assert store.prune(100 * per) == 900
    assert set(store.get([e.key for e in a]).keys) == {e.key for e in a[500:600]}
    assert store.touch([e.key for e in a]) == 100
    store.close()
    # a second store on the same table (another node) sees the same entries; schema creation is idempotent
    other = PostgresStore(url)
    assert other.stats().entries == 100
    other.close()


def test_postgres_table_from_before_key_schemes_is_upgraded(pg):
    """A shared table made before key schemes gains the column (its rows: scheme 1, unreachable); stats count
    them as stale and prune removes exactly them. A warm read writes nothing (last_used moves once a day)."""
    import psycopg

    from evolve.cache import PostgresStore

    url = pg_url(pg.create())
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("""CREATE TABLE evolve_vectors (key bytea PRIMARY KEY, model text NOT NULL, dim integer NOT NULL,
                        payload bytea NOT NULL, checksum bytea NOT NULL, last_used timestamptz NOT NULL DEFAULT now())""")
        conn.execute("INSERT INTO evolve_vectors (key, model, dim, payload, checksum) "
                     "SELECT decode(lpad(to_hex(i), 64, '0'), 'hex'), 'old', 1, '\\x00000000', '\\x00' "
                     "FROM generate_series(1, 40) i")
    store = PostgresStore(url)
    new = _entries(25, "m2")
    store.put(new)
    st = store.stats()
    assert (st.entries, st.stale_entries) == (25, 40)
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        stamps = conn.execute("SELECT key, last_used FROM evolve_vectors ORDER BY key").fetchall()
        assert len(store.get([e.key for e in new])) == 25
        assert conn.execute("SELECT key, last_used FROM evolve_vectors ORDER BY key").fetchall() == stamps
    assert store.prune(None) == 40
    st = store.stats()
    assert (st.entries, st.stale_entries) == (25, 0)
    store.close()


def test_tiered_cache_shares_vectors_between_workspaces(pg, tmp_path, caplog):
    """Node A embeds; node B (its own workspace, empty local cache) reads A's vectors from the shared store and
    keeps a local copy; a dead shared store leaves the local cache working."""
    import numpy as np

    from evolve.cache import EmbeddingCache, TieredStore
    from evolve.workspace import Workspace

    url = pg_url(pg.create())

    class Fake:
        config = type("C", (), {"model": "fake"})()
        calls = 0

        def identity(self):
            return "fake-1"

        def embed(self, texts, kind="document", progress=None):
            Fake.calls += len(texts)
            return np.stack([np.full(4, len(t), dtype=np.float32) for t in texts])

    texts = [f"text number {i}" for i in range(50)]
    ws_a, ws_b = Workspace(tmp_path / "a").ensure(), Workspace(tmp_path / "b").ensure()
    a = EmbeddingCache.open(ws_a, url)
    assert isinstance(a.store, TieredStore)
    va, sa = a.embed(Fake(), texts, "document")
    assert sa.n_embedded == 50
    a.close()
    b = EmbeddingCache.open(ws_b, url)
    vb, sb = b.embed(Fake(), texts, "document")
    assert sb.n_hits == 50 and sb.n_embedded == 0 and np.array_equal(va, vb)
    assert b.store.local.stats().entries == 50  # copied into B's local tier
    b.close()
    # the default stays the local SQLite cache
    plain = EmbeddingCache.open(ws_a)
    assert plain.store.location == str(ws_a.cache_path)
    plain.close()
    # the shared store goes away: one warning, the local tier goes on
    b = EmbeddingCache.open(ws_b, url)
    b.store.remote._conninfo = pg_url("evolve_no_such_db", driver="postgresql")
    b.store.remote._drop_connection()
    with caplog.at_level("WARNING", logger="evolve.cache"):
        _, sb2 = b.embed(Fake(), texts + ["new text"], "document")
    assert sb2.n_hits == 50 and sb2.n_embedded == 1
    assert b.store.remote is None and "local cache only" in caplog.text
    b.close()
