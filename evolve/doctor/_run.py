"""The checks in order, run one by one; a check that breaks is a ``fail`` of its own, never the end of the run."""

from __future__ import annotations

import importlib
import logging
import time

from evolve.doctor._base import Check, CheckResult, Status

__all__ = ["CHECKS", "check_names", "run_checks", "exit_code", "write_report"]

log = logging.getLogger("evolve.doctor")

#: name -> "module:Class", in the order they run (cheap and local first; the deep engine last)
CHECKS: dict[str, str] = {
    "secrets": "evolve.doctor._checks_misc:SecretsCheck",
    "workspace": "evolve.doctor._checks_storage:WorkspaceCheck",
    "workspace.cache": "evolve.doctor._checks_storage:CacheCheck",
    "storage.optuna": "evolve.doctor._checks_storage:OptunaStorageCheck",
    "tracking.mlflow": "evolve.doctor._checks_storage:MlflowCheck",
    "endpoint.embedding": "evolve.doctor._checks_services:EmbeddingEndpointCheck",
    "endpoint.rerank": "evolve.doctor._checks_services:RerankEndpointCheck",
    "endpoint.llm": "evolve.doctor._checks_services:LLMEndpointCheck",
    "korean": "evolve.doctor._checks_misc:KoreanCheck",
    "gpu.driver": "evolve.doctor._checks_gpu:DriverCheck",
    "gpu.capability": "evolve.doctor._checks_gpu:CapabilityCheck",
    "gpu.memory": "evolve.doctor._checks_gpu:MemoryCheck",
    "vllm.import": "evolve.doctor._checks_gpu:VllmImportCheck",
    "vllm.engine": "evolve.doctor._checks_gpu:VllmEngineCheck",
}


def check_names() -> list[str]:
    return list(CHECKS)


def _load(name: str) -> Check:
    module, _, cls = CHECKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def run_checks(ctx, *, only: list[str] | None = None, on_result=None) -> list[CheckResult]:
    """Every check (``only``: those names) against ``ctx``; deep checks only when ``ctx.deep``. ``on_result(r)``
    is called as each result arrives (the CLI prints it at once: long checks show progress)."""
    from evolve.errors import ConfigError, EvolveError, did_you_mean

    names = list(CHECKS)
    for n in only or []:
        if n not in CHECKS:
            raise ConfigError(f"unknown doctor check '{n}': expected one of {', '.join(names)}{did_you_mean(n, names)}")
    results: list[CheckResult] = []
    for name in names:
        if only and name not in only:
            continue
        check = _load(name)
        t0 = time.perf_counter()
        if check.deep and not ctx.deep:
            got = [check.skip("runs with --deep only (it starts a vLLM engine)")]
        else:
            try:
                out = check.run(ctx)
                got = out if isinstance(out, list) else [out]
            except EvolveError as err:
                got = [CheckResult(name, Status.FAIL, str(err), "", "see the message")]
            except Exception as err:  # noqa: BLE001 - a broken check must not stop the others
                log.debug("doctor check %s broke", name, exc_info=True)
                msg = " ".join(f"{type(err).__name__}: {err}".split())[:300]
                got = [CheckResult(name, Status.FAIL, f"the check itself failed: {msg}", "",
                                   "run `evolve --debug doctor` for the traceback")]
        took = time.perf_counter() - t0
        for r in got:
            r.seconds = took / len(got)
            results.append(r)
            if on_result is not None:
                on_result(r)
    return results


def exit_code(results: list[CheckResult]) -> int:
    """0 when nothing failed, 1 when something did."""
    return 1 if any(r.status is Status.FAIL for r in results) else 0


def write_report(path, results: list[CheckResult]) -> None:
    """``doctor.json``: the same records as ``--json``, written atomically."""
    from evolve._io import atomic_write_json

    atomic_write_json(path, [r.to_record() for r in results])
