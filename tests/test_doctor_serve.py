"""`GET /v1/doctor` of a real `evolve serve` on 127.0.0.1: behind the API key, the records of `evolve doctor
--json` (schema-valid) for the node and the champion being served."""

from __future__ import annotations

import pytest
from serve_helpers import SPARSE_AUTO, Server, get, write_mixed_corpus

KEY = "doctor-key-for-tests-only"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("serve-doctor")
    corpus = write_mixed_corpus(base / "corpus")
    ws = base / "ws"
    ws.mkdir()
    (ws / "champion.yaml").write_text(SPARSE_AUTO, encoding="utf-8")
    server = Server(["--workspace", str(ws), "--dataset", str(corpus), "--api-key-env", "EVOLVE_TEST_KEY"],
                    base / "serve.log", env={"EVOLVE_TEST_KEY": KEY})
    yield server, ws
    server.stop()


@pytest.mark.slow
def test_doctor_route_behind_the_key(served):
    import jsonschema

    from evolve.doctor import load_schema

    server, ws = served
    assert get(server.url + "/v1/doctor").status_code == 401
    r = get(server.url + "/v1/doctor", key=KEY, timeout=180)
    assert r.status_code == 200, r.text
    records = r.json()
    jsonschema.validate(records, load_schema())
    got = {rec["check"]: rec for rec in records}
    # the served champion's `auto` tokenizer loads kiwipiepy for Korean text: the korean check ran for real
    assert got["korean"]["status"] == "ok" and "kiwipiepy" in got["korean"]["found"]
    assert got["workspace"]["status"] == "ok" and str(ws) in got["workspace"]["found"]
    assert got["gpu.memory"]["status"] == "skip" and got["vllm.engine"]["status"] == "skip"
    assert not any(rec["status"] == "fail" for rec in records), records
    # the server kept serving meanwhile
    assert get(server.url + "/healthz").status_code == 200
