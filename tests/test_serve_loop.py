"""The whole cycle on a SciFact subset: a real study (`evolve run`), a real `evolve serve`, a promotion under load
(acceptance 2: blue/green, zero failed requests), a failed build that leaves the champion serving, and the loop
closing (acceptance 4): scripted users -> `evolve feedback export` -> gold -> the panel's ranking -> promotion ->
the server swaps."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import run_cli
from serve_helpers import Server, get, post, scifact_serve_folder, seed_workspace_cache

pytestmark = pytest.mark.slow

SPACE = """\
# cheap axes only: every vector is in the seeded cache
base: default
params:
  retrieval.mode: {choices: [dense, sparse, hybrid]}
  embedding.dim: {choices: [null, 64]}
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder, cache_file, train = scifact_serve_folder(tmp_path_factory)
    base = tmp_path_factory.mktemp("serve-loop")
    ws = base / "ws"
    seed_workspace_cache(ws, cache_file)
    (base / "space.yaml").write_text(SPACE, encoding="utf-8")
    proc = run_cli("run", "--workspace", str(ws), "--study", "serve", "--dataset", str(folder), "--trials", "4",
                   "--search-space", str(base / "space.yaml"), "--seed", "3", "--report-top", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"ws": ws, "base": base, "folder": folder, "train": train}


@pytest.fixture(scope="module")
def server(study):
    srv = Server(["--workspace", str(study["ws"]), "--watch-interval", "0.5"], study["base"] / "serve.log")
    yield srv
    srv.stop()


def _completed_trials(ws):
    import optuna

    from evolve.config import PipelineConfig
    from evolve.storage import open_storage
    from evolve.study import ATTR

    st = optuna.load_study(study_name="serve", storage=open_storage(f"sqlite:///{ws / 'optuna.db'}"))
    out = {}
    for t in st.trials:
        cfg = t.user_attrs.get(ATTR + "config")
        if t.state.name == "COMPLETE" and cfg:
            out[t.number] = PipelineConfig.model_validate(cfg)
    return out


def _load(url: str, n_threads: int, stop: threading.Event, seen: list, failures: list, texts: list[str]) -> list:
    import httpx

    def work(i):
        with httpx.Client(timeout=60) as http:
            for n in range(3000):  # bounded
                if stop.is_set():
                    return
                try:
                    r = http.post(url + "/v1/retrieve", json={"query": texts[(i + n) % len(texts)], "k": 10})
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                    else:
                        seen.append((time.monotonic(), r.json()["config_version"]))
                except httpx.HTTPError as err:
                    failures.append(repr(err))
                time.sleep(0.02)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    return threads


def test_promotion_under_load_swaps_without_a_failed_request(study, server):
    """Acceptance 2: 4 threads on loopback; `evolve promote-config --force` changes the champion; zero failed
    requests, both config_versions seen, the load runs on the new one after the switch; `evolve rollback`
    swaps back the same way."""
    from evolve.datasets import load_dataset

    ws = study["ws"]
    before = get(server.url + "/v1/version").json()
    assert "the dataset of study" not in before["champion_source"]  # the shipped default, no promotion yet
    trials = _completed_trials(ws)
    candidate = next(n for n, cfg in sorted(trials.items()) if cfg.fingerprint() != before["config_fingerprint"])
    ds = load_dataset(study["folder"])
    texts = [ds.queries[q] for q in study["train"][:40]]
    seen, failures, stop = [], [], threading.Event()
    threads = _load(server.url, 4, stop, seen, failures, texts)
    try:
        time.sleep(2)
        proc = run_cli("promote-config", "--workspace", str(ws), "--study", "serve", "--trial", str(candidate), "--force")
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "PROMOTE" in proc.stdout
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and get(server.url + "/v1/version").json()["swaps"] < 1:
            time.sleep(0.2)
        switched = time.monotonic()
        while time.monotonic() < switched + 3:  # the load keeps running on the new champion
            time.sleep(0.1)
        after = get(server.url + "/v1/version").json()
        rb = run_cli("rollback", "--workspace", str(ws))
        assert rb.returncode == 0, rb.stderr
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and get(server.url + "/v1/version").json()["swaps"] < 2:
            time.sleep(0.2)
        time.sleep(2)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not failures, failures[:5]
    old, new = before["config_version"], after["config_version"]
    assert old != new and after["config_fingerprint"] == trials[candidate].fingerprint()
    assert after["promoted_at"] and after["corpus_fingerprint"] == before["corpus_fingerprint"]
    versions = [v for _, v in seen]
    assert set(versions) == {old, new}
    after_switch = [v for t, v in seen if switched + 0.5 < t < switched + 3]
    assert len(after_switch) >= 20 and set(after_switch) == {new}
    assert versions[-1] == old  # rolled back
    assert get(server.url + "/v1/version").json()["config_version"] == old
    log = server.log_text()
    assert f"now serving config_version {new} (was {old}" in log and f"now serving config_version {old} (was {new}" in log


def test_a_failed_build_leaves_the_champion_serving(study, server):
    ws = study["ws"]
    before = get(server.url + "/v1/version").json()
    champion = ws / "champion.yaml"
    saved = champion.read_text(encoding="utf-8") if champion.exists() else None
    champion.write_text("embedding:\n  model: no-such-model-anywhere\nretrieval:\n  mode: dense\n", encoding="utf-8")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "building the new champion failed" not in server.log_text():
            r = post(server.url + "/v1/retrieve", {"query": "vitamin D and bone fractures", "k": 5})
            assert r.status_code == 200 and r.json()["config_version"] == before["config_version"]
            time.sleep(0.2)
        lines = [ln for ln in server.log_text().splitlines() if "building the new champion failed" in ln]
        assert len(lines) == 1 and "no-such-model-anywhere" in lines[0]
        assert f"still serving config_version {before['config_version']}" in lines[0]
        assert get(server.url + "/v1/version").json()["config_version"] == before["config_version"]
    finally:
        if saved is None:
            champion.unlink()
        else:
            champion.write_text(saved, encoding="utf-8")
