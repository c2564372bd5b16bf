"""Issues 2 and 3: the ``evolve`` command line as a real subprocess: eval, errors, cache maintenance."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, cli_eval_workspace

METRICS = {"ndcg@10", "recall@100", "mrr@10", "map@100"}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    return cli_eval_workspace(tmp_path_factory)


def one_error_line(proc, *parts: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    for p in parts:
        assert p in lines[0], (p, lines[0])
    return lines[0]


def test_help_and_version(cli):
    proc = cli("--help")
    assert proc.returncode == 0
    for cmd in ("eval", "cache"):
        assert cmd in proc.stdout
    assert cli("eval", "--help").returncode == 0
    assert "--max-size" in cli("cache", "prune", "--help").stdout
    v = cli("--version")
    assert v.returncode == 0 and v.stdout.strip() == "evolve 0.1.0"


def test_importing_the_cli_is_light():
    code = textwrap.dedent("""
        import json, sys
        import evolve.cli
        heavy = ["torch", "faiss", "vllm", "sentence_transformers", "transformers", "mlflow", "optuna", "ranx"]
        print(json.dumps({m: m in sys.modules for m in heavy}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert not loaded["torch"] and not loaded["faiss"] and not loaded["vllm"]
    assert not loaded["sentence_transformers"] and not loaded["transformers"]


def test_eval_json(evaluated):
    ws, res = evaluated
    assert res["rc"] == 0, res["stderr"]
    last = res["stdout"].strip().splitlines()[-1]
    summary = json.loads(last)
    assert isinstance(summary, dict)
    assert set(summary["metrics"]) == METRICS
    assert all(0.0 <= v <= 1.0 for v in summary["metrics"].values())
    assert 0.7 < summary["metrics"]["ndcg@10"] < 0.98  # MiniLM over 300 SciFact abstracts
    assert summary["n_queries"] == 300
    assert summary["n_docs"] == 300
    from evolve.datasets import load_dataset

    assert summary["dataset_fingerprint"] == load_dataset("scifact").subset(300, "test").fingerprint
    assert summary["n_embedded"] == 600  # 300 documents + 300 queries, cold
    assert summary["cache_hit_rate"] == 0.0
    assert summary["embed_seconds"] > 0
    assert "Traceback" not in res["stderr"]


def test_eval_out_dir(evaluated):
    _, res = evaluated
    out = Path(res["out"])
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "metrics.json", "per_query.tsv", "run.trec"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(res["stdout"].strip().splitlines()[-1])
    rows = (out / "per_query.tsv").read_text().splitlines()
    assert rows[0].split("\t")[0] == "query_id" and set(rows[0].split("\t")[1:]) == METRICS
    assert len(rows) == 301
    trec = (out / "run.trec").read_text().splitlines()
    assert len(trec) == 300 * 100 and len(trec[0].split()) == 6
    from evolve.config import PipelineConfig, load_config

    assert load_config(out / "config.yaml") == PipelineConfig()


def test_cache_stats_after_eval(evaluated, cli):
    ws, _ = evaluated
    proc = cli("cache", "stats", "--workspace", str(ws))
    assert proc.returncode == 0, proc.stderr
    assert "entries        600" in proc.stdout
    assert "last run       hit rate 0.0% (0/600 texts, 600 embedded in" in proc.stdout
    data = json.loads(cli("cache", "stats", "--workspace", str(ws), "--json").stdout.strip().splitlines()[-1])
    assert set(data) == {"entries", "size_bytes", "location", "stale_entries", "derived_bytes", "last_run"}
    assert data["entries"] == 600 and data["size_bytes"] > 600 * 384 * 4
    assert data["location"] == str(ws.absolute() / "cache" / "embeddings.sqlite")
    last = data["last_run"]
    assert last["command"] == "eval"
    assert {k: last[k] for k in ("n_texts", "n_hits", "n_embedded", "n_damaged", "cache_hit_rate")} == {
        "n_texts": 600, "n_hits": 0, "n_embedded": 600, "n_damaged": 0, "cache_hit_rate": 0.0}


def test_cached_rerun_and_cache_maintenance(evaluated, cli, tmp_path):
    src, _ = evaluated
    ws = tmp_path / "ws"
    shutil.copytree(src / "cache", ws / "cache")
    # a second eval that changes only the index is fully cached
    proc = cli("eval", "--subset", "300", "--json", "--workspace", str(ws), "--set", "index.type=hnsw")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["n_embedded"] == 0 and summary["cache_hit_rate"] == 1.0
    stats = json.loads(cli("cache", "stats", "--json", "--workspace", str(ws)).stdout.strip().splitlines()[-1])
    assert stats["last_run"]["cache_hit_rate"] == 1.0 and stats["entries"] == 600
    assert "hit rate 100.0% (600/600" in cli("cache", "stats", "--workspace", str(ws)).stdout

    proc = cli("cache", "prune", "--max-size", "1KB", "--workspace", str(ws))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("removed 600 entries; 0 left")
    assert json.loads(cli("cache", "stats", "--json", "--workspace", str(ws)).stdout.splitlines()[-1])["entries"] == 0

    ws2 = tmp_path / "ws2"
    shutil.copytree(src / "cache", ws2 / "cache")
    proc = cli("cache", "prune", "--max-size", "500MB", "--workspace", str(ws2))
    assert proc.returncode == 0 and proc.stdout.startswith("removed 0 entries; 600 left")
    proc = cli("cache", "invalidate", "--model", "all-mpnet-base-v2", "--workspace", str(ws2))
    assert proc.returncode == 0 and "removed 0 entries of model 'all-mpnet-base-v2'" in proc.stdout
    proc = cli("cache", "invalidate", "--model", "all-MiniLM-L6-v2", "--workspace", str(ws2))
    assert proc.returncode == 0, proc.stderr
    assert "removed 600 entries of model 'all-MiniLM-L6-v2'" in proc.stdout
    assert json.loads(cli("cache", "stats", "--json", "--workspace", str(ws2)).stdout.splitlines()[-1])["entries"] == 0


def test_bad_max_size(cli, tmp_path):
    proc = cli("cache", "prune", "--max-size", "abc", "--workspace", str(tmp_path / "ws"))
    one_error_line(proc, "expected a size like 500MB or 2GiB, got 'abc'")


def test_unknown_config_key(cli, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("chunking:\n  strategy: tokens\n  sise: 64\n")
    line = one_error_line(cli("eval", "--config", str(cfg), "--workspace", str(tmp_path / "ws")),
                          str(cfg), "unknown config key 'chunking.sise'", "did you mean 'size'")
    assert line == f"error: {cfg}: unknown config key 'chunking.sise' in section 'chunking' (did you mean 'size'?)"
    one_error_line(cli("eval", "--set", "embedding.modle=x", "--workspace", str(tmp_path / "ws")),
                   "unknown config key 'embedding.modle'", "did you mean 'model'")


def test_malformed_yaml(cli, tmp_path):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("chunking:\n  strategy: tokens\n bad: indent\n")
    line = one_error_line(cli("eval", "--config", str(cfg), "--workspace", str(tmp_path / "ws")))
    assert line.startswith(f"error: {cfg}:3: expected valid YAML")


def test_debug_shows_traceback(cli, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("chunking:\n  sise: 64\n")
    for args in (["--debug", "eval"], ["eval", "--debug"]):
        proc = cli(*args, "--config", str(cfg), "--workspace", str(tmp_path / "ws"))
        assert proc.returncode != 0
        assert "Traceback (most recent call last)" in proc.stderr
        assert "ConfigError" in proc.stderr


def test_bad_dataset_path(cli, tmp_path):
    one_error_line(cli("eval", "--dataset", str(tmp_path / "nowhere"), "--workspace", str(tmp_path / "ws")),
                   "expected a bundled dataset name (scifact) or an existing path")
    one_error_line(cli("eval", "--dataset", "scifakt", "--workspace", str(tmp_path / "ws")), "did you mean 'scifact'")
    bad = tmp_path / "beir"
    bad.mkdir()
    (bad / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n{"_id": "d1", "text": "y"}\n')
    (bad / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    (bad / "qrels.tsv").write_text("q1\td1\t1\n")
    one_error_line(cli("eval", "--dataset", str(bad), "--workspace", str(tmp_path / "ws")),
                   f"{bad / 'corpus.jsonl'}:2:", "duplicate document id 'd1'")


def test_unknown_split(cli, tmp_path):
    one_error_line(cli("eval", "--split", "tset", "--workspace", str(tmp_path / "ws")),
                   "unknown split 'tset'", "did you mean 'test'")


def test_model_not_installed(cli, tmp_path):
    one_error_line(cli("eval", "--subset", "100", "--set", "embedding.model=all-MiniLM-L12-v2",
                       "--workspace", str(tmp_path / "ws")),
                   "model 'all-MiniLM-L12-v2' not found", "local folder", "nothing is downloaded")


def test_unwritable_workspace(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    one_error_line(cli("cache", "stats", "--workspace", str(blocker / "ws")), "is not writable")


def test_python_dash_m(tmp_path):
    """`python -m evolve` is the console script: same version, and a user error is one line and exit 2 (it goes
    through evolve.cli.main, not typer's own error handling), from outside the repository."""
    from importlib.metadata import version

    proc = subprocess.run([sys.executable, "-m", "evolve", "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"evolve {version('evolve')}"
    bad = subprocess.run([sys.executable, "-m", "evolve", "status", "--workspace", str(tmp_path / "ws"), "--study", "s"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip() == (f"error: no study 's' in sqlite:///{tmp_path / 'ws' / 'optuna.db'}: expected one of "
                                  "(none: run `evolve run` first)")


# ------------------------------------------------------------------------------------------ stop signals

SLOW_START = {"EVOLVE_SERVER_START_TIMEOUT": "600"}  # a shared 2-core box can take minutes to start mlflow server


def _wait_for_line(path: Path, prefix: str, proc, timeout: float = 600) -> str:
    import time

    end = time.time() + timeout
    while time.time() < end:
        for line in path.read_text().splitlines() if path.exists() else []:
            if prefix in line:
                return line
        assert proc.poll() is None, f"exited {proc.returncode} before printing {prefix!r}: {path.read_text()[-2000:]}"
        time.sleep(0.3)
    raise AssertionError(f"no {prefix!r} within {timeout} s")


def _alive(pids: list[int]) -> list[int]:
    import psutil

    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop_and_check(proc, signum: int, children: list[int], port: int) -> None:
    """Send ``signum`` to the evolve process alone (not its group) and check that it took down everything it
    started: no child process alive, nothing listening on the port."""
    assert children and _listening(port)
    proc.send_signal(signum)
    rc = proc.wait(timeout=120)
    leftover = _alive(children)
    try:
        assert rc == 128 + signum, rc
        assert leftover == [], f"processes left behind: {leftover}"
        assert not _listening(port), f"port {port} still answers"
    finally:
        for pid in leftover:  # never leave them to the rest of the suite
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGHUP, marks=pytest.mark.slow)],
                         ids=["SIGTERM", "SIGHUP"])
def test_a_stopped_dashboard_leaves_no_server_behind(tmp_path, signum):
    import psutil

    exe = Path(sys.executable).with_name("evolve")
    out = tmp_path / "out.txt"
    with open(out, "w") as fh:
        proc = subprocess.Popen([str(exe), "dashboard", "--port", "0", "--workspace", str(tmp_path / "ws")],
                                stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **SLOW_START})
    try:
        line = _wait_for_line(out, "MLflow dashboard: http://127.0.0.1:", proc)
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        _stop_and_check(proc, signum, children, port)
        assert f"stopped by {signal.Signals(signum).name}: the MLflow server is stopped too" in out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_a_stopped_run_workers_leaves_no_worker_or_server_behind(tmp_path):
    import psutil

    exe = Path(sys.executable).with_name("evolve")
    out = tmp_path / "out.txt"
    space = REPO / "tests" / "data" / "space_small.yaml"
    with open(out, "w") as fh:
        proc = subprocess.Popen([str(exe), "run", "--workers", "1", "--trials", "20", "--dataset", "scifact",
                                 "--subset", "150", "--search-space", str(space), "--workspace", str(tmp_path / "ws")],
                                stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **SLOW_START})
    try:
        line = _wait_for_line(out, "started a local MLflow server for the workers at http://127.0.0.1:", proc)
        port = int(line.rsplit(":", 1)[1])
        import time

        end = time.time() + 120
        while not [c for c in psutil.Process(proc.pid).children() if "worker" in c.cmdline()] and time.time() < end:
            time.sleep(0.3)
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        _stop_and_check(proc, signal.SIGTERM, children, port)
        assert "stopped by SIGTERM: the workers and the MLflow server this started are stopped" in out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


# ---------------------------------------------------------------------------------------- usage errors (issue 19)
COMMON = ("--workspace", "--study", "--storage", "--tracking-uri", "--cache-url")


def _leaf_commands():
    """(words, click command) of every command of the typer app, walked from the root."""
    from typer.main import get_command

    from evolve.cli import app

    out = []

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in sorted(subs.items()):
                walk(sub, [*path, name])
        else:
            out.append((path, cmd))

    walk(get_command(app), [])
    return out


def _readme_common_options() -> dict[str, set[str]]:
    """The README's table of which command takes which common option."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    header = "| commands | `--workspace` | `--study` | `--storage` | `--tracking-uri` | `--cache-url` |"
    assert header in text, "README lost its table of common options"
    rows = text.split(header, 1)[1].strip().splitlines()[1:]
    table: dict[str, set[str]] = {}
    for row in rows:
        if not row.startswith("|"):
            break
        cells = [c.strip() for c in row.strip("|").split("|")]
        names = [n.strip().strip("`") for n in cells[0].split(" (", 1)[0].split(",")]
        for name in names:
            assert name not in table, f"README names {name} twice"
            table[name] = {opt for opt, cell in zip(COMMON, cells[1:]) if cell == "yes"}
    return table


def test_every_command_takes_the_common_options_the_readme_says():
    table = _readme_common_options()
    commands = {" ".join(words): cmd for words, cmd in _leaf_commands()}
    assert set(table) == set(commands), (set(table) ^ set(commands))
    for name, cmd in commands.items():
        opts = {o for p in cmd.params for o in p.opts}
        assert {o for o in COMMON if o in opts} == table[name], name


def test_a_mistyped_option_of_every_command_is_one_line_and_exit_2(capsys):
    """Every command of the tree, in process (the same ``main`` the console script calls): a mistyped option is
    the framework's own message on one line, after the command it is about, with its suggestion; exit code 2."""
    from evolve.cli import main

    leaves = _leaf_commands()
    assert len(leaves) >= 20
    for words, cmd in leaves:
        has_workspace = any("--workspace" in p.opts for p in cmd.params)
        typo = "--worksapce" if has_workspace else "--no-such-option"
        rc = main([*words, typo, "x"])
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert rc == 2, (words, rc, captured.err)
        assert len(lines) == 1 and not captured.out, (words, captured.err, captured.out)
        assert lines[0].startswith(f"error: evolve {' '.join(words)}: No such option: {typo}"), lines[0]
        if has_workspace:
            assert "--workspace" in lines[0].split(typo, 1)[1], lines[0]  # the framework's "possible options"


def test_other_usage_errors_are_one_line_and_exit_2(capsys):
    from evolve.cli import main

    for argv, expected in ((["statuss"], "error: evolve: No such command 'statuss'. Did you mean 'status'?"),
                           (["promote-config", "--trial", "abc"], "error: evolve promote-config: Invalid value for '--trial'"),
                           (["eval", "extra-arg"], "error: evolve eval: Got unexpected extra argument(s) (extra-arg)")):
        rc = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith(expected), (argv, rc, err)


def test_usage_errors_through_the_console_script(cli):
    """The issue's cases as real subprocesses (the console script, not only ``main``)."""
    one_error_line(cli("status", "--nope"), "evolve status: No such option: --nope")
    one_error_line(cli("dataset", "info", "--workspace", "W"), "evolve dataset info: No such option: --workspace")
