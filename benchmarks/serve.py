"""`evolve serve` under load on loopback, side by side with `evolve search` (a new process per query).

The SciFact hybrid champion (all-MiniLM-L6-v2 whole documents + BM25 `english`, RRF k=10), no reranker, on
the full bundled SciFact (5,183 documents). One run:

1. start `evolve serve` (the first start of a fresh workspace embeds the corpus into its cache; the start-up
   reported is a second, warm one);
2. 20 warm-up requests, then bounded runs at 1, 4 and 16 concurrent clients (Python threads, one HTTP/1.1
   connection each, SciFact test query texts in a fixed order): p50, p95, p99 latency and requests/s, and the
   server's CPU seconds per request (from /proc);
3. `wrk` against the same endpoint (a Lua script POSTs one JSON body), 10 s per concurrency level;
4. `evolve search "<query>"` as a new process, 3 times: the median, and the ratio to the server's warm p50.

    python benchmarks/serve.py                                  # writes benchmarks/results/serve.txt
    python benchmarks/serve.py --workspace .evolve-bench/serve --requests 200

The load generators run on the same 2 cores as the server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
EVOLVE = str(Path(sys.executable).with_name("evolve"))

HYBRID = """\
# the SciFact hybrid champion of benchmarks/serve.py: MiniLM whole documents + BM25, RRF, no reranker
retrieval:
  mode: hybrid
  top_k: 100
fusion:
  method: rrf
  rrf_k: 10
"""

LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '%s'
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(ws: Path, port: int, log: Path) -> tuple[subprocess.Popen, float]:
    import httpx

    t0 = time.perf_counter()
    proc = subprocess.Popen([EVOLVE, "serve", "--workspace", str(ws), "--dataset", "scifact", "--port", str(port)],
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"evolve serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.2)


def load(url: str, texts: list[str], clients: int, n: int) -> dict:
    import httpx

    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(n))

    def work():
        with httpx.Client(timeout=120) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t = time.perf_counter()
                r = http.post(url + "/v1/retrieve", json={"query": texts[i % len(texts)], "k": 10})
                dt = time.perf_counter() - t
                with lock:
                    (lat.append(dt) if r.status_code == 200 else errors.append(r.text[:100]))

    threads = [threading.Thread(target=work) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"clients": clients, "requests": len(lat), "errors": len(errors), "p50": q[49] * 1000,
            "p95": q[94] * 1000, "p99": q[98] * 1000, "rps": len(lat) / wall, "wall": wall}


def run_wrk(url: str, body: str, clients: int, seconds: int) -> dict | None:
    if shutil.which("wrk") is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(LUA % body.replace("'", "\\'"))
        script = fh.name
    out = subprocess.run(["wrk", "-t", str(min(clients, 2)), "-c", str(clients), "-d", f"{seconds}s", "--latency",
                          "-s", script, url + "/v1/retrieve"], capture_output=True, text=True).stdout
    os.unlink(script)
    res = {"clients": clients, "raw": out}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            res["rps"] = float(parts[1])
        elif len(parts) == 2 and parts[0] in ("50%", "90%", "99%"):
            v = parts[1]
            ms = float(v[:-2]) if v.endswith("ms") else float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000
            res[parts[0]] = ms
        elif "Non-2xx" in line:
            res["non2xx"] = int(parts[-1])
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default=str(REPO / ".evolve-bench" / "serve"))
    ap.add_argument("--requests", type=int, default=300, help="requests per concurrency level (bounded)")
    ap.add_argument("--wrk-seconds", type=int, default=10)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serve.txt"))
    args = ap.parse_args()

    from evolve._servers import free_port, stop_server
    from evolve.datasets import load_dataset

    ws = Path(args.workspace)
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "champion.yaml").write_text(HYBRID, encoding="utf-8")
    ds = load_dataset("scifact")
    texts = [ds.queries[q] for q in sorted(ds.qrels["test"])]
    log = ws / "serve-bench.log"
    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    say("evolve serve benchmark: SciFact (5,183 documents), hybrid MiniLM + BM25 RRF, no reranker")
    say(f"machine: {os.cpu_count()} cores (shared with other work while measuring), Python {sys.version.split()[0]}")
    port = free_port()
    proc, first = start_server(ws, port, log)  # a fresh workspace embeds the corpus here
    stop_server(proc)
    port = free_port()
    proc, warm_start = start_server(ws, port, log)
    url = f"http://127.0.0.1:{port}"
    say(f"server start: {first:.1f} s the first time (embeds what the cache lacks), {warm_start:.1f} s warm")
    try:
        load(url, texts, 1, 20)  # warm-up
        say()
        say("Python load generator (threads, one connection each), SciFact test query texts")
        say(f"{'clients':>8} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>8} {'server CPU s/req':>17}")
        results = []
        for c in (1, 4, 16):
            cpu0 = cpu_seconds(proc.pid)
            r = load(url, texts, c, args.requests)
            r["cpu_per_req"] = (cpu_seconds(proc.pid) - cpu0) / max(1, r["requests"])
            results.append(r)
            say(f"{c:>8} {r['requests']:>9} {r['errors']:>7} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['p99']:>8.1f} "
                f"{r['rps']:>8.1f} {r['cpu_per_req']:>17.4f}")
        say()
        body = json.dumps({"query": texts[0], "k": 10})
        wrk_rows = []
        for c in (1, 4, 16):
            cpu0 = cpu_seconds(proc.pid)
            w = run_wrk(url, body, c, args.wrk_seconds)
            if w is None:
                say("wrk: not installed (Debian: apt-get install -y wrk)")
                break
            w["cpu"] = cpu_seconds(proc.pid) - cpu0
            wrk_rows.append(w)
        if wrk_rows:
            say(f"wrk ({args.wrk_seconds} s per level, one query body repeated: the query vector comes from the cache)")
            say(f"{'clients':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'req/s':>8} {'server CPU s/req':>17}")
            for w in wrk_rows:
                n = max(1.0, w.get("rps", 0) * args.wrk_seconds)
                say(f"{w['clients']:>8} {w.get('50%', float('nan')):>8.1f} {w.get('90%', float('nan')):>8.1f} "
                    f"{w.get('99%', float('nan')):>8.1f} {w.get('rps', float('nan')):>8.1f} {w['cpu'] / n:>17.4f}"
                    + (f"  ({w['non2xx']} non-2xx)" if w.get("non2xx") else ""))
        say()
        searches = []
        for text in texts[:3]:
            t = time.perf_counter()
            p = subprocess.run([EVOLVE, "search", text, "--workspace", str(ws), "--dataset", "scifact", "--json"],
                               capture_output=True, text=True)
            searches.append(time.perf_counter() - t)
            if p.returncode != 0:
                say(f"evolve search failed: {p.stderr[-300:]}")
        med = statistics.median(searches)
        one = results[0]
        say(f"`evolve search` (a new process per query, 3 runs): median {med:.2f} s "
            f"({', '.join(f'{s:.2f}' for s in searches)})")
        say(f"ratio: `evolve search` median / server warm p50 at 1 client = {med * 1000 / one['p50']:.0f}x")
        say(f"targets: warm p95 at 1 client {one['p95']:.1f} ms (target <= 150 ms); "
            f"{med * 1000 / one['p50']:.0f}x faster than `evolve search` (target >= 100x)")
        best = max(results, key=lambda r: r["rps"])
        say(f"what bounds throughput: the server spends {best['cpu_per_req'] * 1000:.1f} ms of CPU per request; "
            f"its searches run on one engine thread (batched), so the ceiling is about "
            f"{1 / max(best['cpu_per_req'], 1e-9):.0f} req/s of one core, and the load generator shares the 2 cores")
    finally:
        stop_server(proc)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
