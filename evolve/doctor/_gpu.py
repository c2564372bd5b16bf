"""The GPUs as the driver reports them: NVML (:mod:`evolve.doctor._nvml`) or ``nvidia-smi``, read into one shape.

The parsers take the text ``nvidia-smi`` prints (the tests feed them output captured on a real H100/H200, in
``tests/data/gpu/``):

* ``nvidia-smi --query-gpu=index,uuid,name,driver_version,memory.total,memory.used,memory.free,compute_cap,pci.bus_id
  --format=csv,noheader,nounits`` (:data:`QUERY_GPU`; memory in MiB),
* ``nvidia-smi --query-compute-apps=gpu_uuid,pid,process_name,used_memory --format=csv,noheader,nounits``
  (:data:`QUERY_APPS`; the ``pid,process_name,used_memory`` form without the UUID is read too),
* the plain ``nvidia-smi`` table, whose header names the highest CUDA version the driver supports.

Imports neither torch nor vllm; running ``nvidia-smi`` is the only side effect.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field

__all__ = [
    "GpuInfo", "GpuProcess", "GpuFacts", "QUERY_GPU", "QUERY_APPS", "MIB",
    "parse_query_gpu", "parse_compute_apps", "parse_smi_header", "facts_from_nvidia_smi", "facts_from_nvml",
    "probe_gpus", "visible_gpu",
]

MIB = 1 << 20
GIB = 1 << 30
QUERY_GPU = "index,uuid,name,driver_version,memory.total,memory.used,memory.free,compute_cap,pci.bus_id"
QUERY_APPS = "gpu_uuid,pid,process_name,used_memory"
_HEADER = re.compile(r"Driver Version:\s*([0-9][0-9.]*)\s+CUDA Version:\s*([0-9]+)\.([0-9]+)")


@dataclass
class GpuInfo:
    """One GPU. ``total`` is what CUDA sees (``cudaMemGetInfo``'s total, the one vLLM multiplies its fraction by):
    the driver's total less its reserved memory, i.e. used + free."""

    index: int
    uuid: str
    name: str
    total: int  # bytes
    used: int
    free: int
    capability: tuple[int, int] | None = None
    reserved: int = 0  # bytes the driver keeps for itself (NVML v2; nvidia-smi: memory.total - used - free)


@dataclass
class GpuProcess:
    pid: int
    name: str
    used: int | None  # bytes; None when the driver cannot tell
    gpu_uuid: str | None = None


@dataclass
class GpuFacts:
    """What the driver says: its version, the highest CUDA it supports, the GPUs and who holds their memory."""

    source: str  # "nvml" or "nvidia-smi"
    driver_version: str | None
    cuda_version: tuple[int, int] | None
    gpus: list[GpuInfo]
    processes: list[GpuProcess] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def holders(self, gpu: GpuInfo) -> list[GpuProcess]:
        """Processes holding memory on ``gpu``, largest first (all processes when the source names no GPU)."""
        mine = [p for p in self.processes if p.gpu_uuid is None or p.gpu_uuid == gpu.uuid]
        return sorted(mine, key=lambda p: -(p.used or 0))

    def as_dict(self) -> dict:
        return {
            "source": self.source, "driver_version": self.driver_version,
            "cuda_version": ".".join(map(str, self.cuda_version)) if self.cuda_version else None,
            "gpus": [{"index": g.index, "uuid": g.uuid, "name": g.name, "total_bytes": g.total, "used_bytes": g.used,
                      "free_bytes": g.free, "compute_capability": ".".join(map(str, g.capability)) if g.capability else None}
                     for g in self.gpus],
            "processes": [{"pid": p.pid, "name": p.name, "used_bytes": p.used, "gpu_uuid": p.gpu_uuid}
                          for p in self.processes],
            "notes": self.notes,
        }


def _fields(line: str) -> list[str]:
    return [f.strip() for f in line.split(",")]


def _number(text: str) -> float | None:
    """A value of ``--format=csv,nounits``; ``[N/A]``, ``[Not Supported]`` and the like are None."""
    try:
        return float(text)
    except ValueError:
        return None


def _capability(text: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_query_gpu(text: str) -> tuple[list[GpuInfo], str | None]:
    """GPUs and the driver version from ``--query-gpu=`` :data:`QUERY_GPU` ``--format=csv,noheader,nounits``."""
    gpus, driver = [], None
    for line in text.splitlines():
        if not line.strip():
            continue
        f = _fields(line)
        if len(f) < 8 or not f[0].isdigit():
            continue
        total, used, free = (int((_number(x) or 0) * MIB) for x in f[4:7])
        gpus.append(GpuInfo(index=int(f[0]), uuid=f[1], name=f[2], total=used + free, used=used, free=free,
                            capability=_capability(f[7]), reserved=max(0, total - used - free)))
        driver = driver or f[3]
    return gpus, driver


def parse_compute_apps(text: str, *, with_uuid: bool = True) -> list[GpuProcess]:
    """``--query-compute-apps=`` :data:`QUERY_APPS` (or ``pid,process_name,used_memory`` with ``with_uuid=False``),
    ``--format=csv,noheader,nounits``. A process name may itself hold commas: pid first, memory last."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("No running"):
            continue
        f = _fields(line)
        uuid = None
        if with_uuid:
            uuid, f = f[0], f[1:]
        if len(f) < 3 or not f[0].isdigit():
            continue
        used = _number(f[-1])
        out.append(GpuProcess(pid=int(f[0]), name=",".join(f[1:-1]).strip(),
                              used=None if used is None else int(used * MIB), gpu_uuid=uuid))
    return out


def parse_smi_header(text: str) -> tuple[str | None, tuple[int, int] | None]:
    """The driver version and the highest CUDA version it supports, from the plain ``nvidia-smi`` table."""
    m = _HEADER.search(text)
    if not m:
        return None, None
    return m.group(1), (int(m.group(2)), int(m.group(3)))


def facts_from_nvidia_smi(query_gpu: str, compute_apps: str, header: str = "", *, with_uuid: bool = True) -> GpuFacts:
    gpus, driver = parse_query_gpu(query_gpu)
    hdr_driver, cuda = parse_smi_header(header)
    return GpuFacts("nvidia-smi", driver or hdr_driver, cuda, gpus, parse_compute_apps(compute_apps, with_uuid=with_uuid))


def facts_from_nvml(readings: dict) -> GpuFacts:
    """:func:`evolve.doctor._nvml.nvml_readings` as :class:`GpuFacts`. Memory: the v2 reading where there is one
    (reserved memory apart, as nvidia-smi and CUDA count), else v1."""
    cuda_raw = readings.get("cuda_driver_version")
    cuda = (int(cuda_raw) // 1000, (int(cuda_raw) % 1000) // 10) if isinstance(cuda_raw, int) and cuda_raw > 0 else None
    gpus, procs = [], []
    for d in readings.get("devices", []):
        mem = d.get("memory_v2") or d.get("memory") or {}
        cap = d.get("compute_capability")
        reserved = int(mem.get("reserved", 0))
        gpus.append(GpuInfo(index=int(d["index"]), uuid=d.get("uuid") or "", name=d.get("name") or "",
                            total=int(mem.get("total", 0)) - reserved, used=int(mem.get("used", 0)),
                            free=int(mem.get("free", 0)), capability=(int(cap[0]), int(cap[1])) if cap else None,
                            reserved=reserved))
        for p in d.get("processes", []):
            procs.append(GpuProcess(pid=int(p["pid"]), name=p.get("name") or "?", used=p.get("used_gpu_memory"),
                                    gpu_uuid=d.get("uuid")))
    notes = [f"{k}: {v}" for k, v in sorted((readings.get("errors") or {}).items())]
    return GpuFacts("nvml", readings.get("driver_version"), cuda, gpus, procs, notes)


def _smi(*args: str, timeout: float = 30.0) -> str:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        raise FileNotFoundError("nvidia-smi not on PATH")
    res = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        msg = " ".join((res.stdout + res.stderr).split())[:300]
        raise RuntimeError(f"nvidia-smi {' '.join(args)} exited {res.returncode}: {msg}")
    return res.stdout


def probe_gpus(source: str = "auto") -> tuple[GpuFacts | None, str]:
    """The GPUs of this machine: ``(facts, "")``, or ``(None, why there are none)``. ``source``: auto (NVML, then
    nvidia-smi), nvml or nvidia-smi."""
    reasons = []
    if source in ("auto", "nvml"):
        from evolve.doctor._nvml import NvmlUnavailable, nvml_readings

        try:
            readings = nvml_readings()
            facts = facts_from_nvml(readings)
            if facts.gpus and facts.driver_version:
                return facts, ""
            reasons.append("NVML answered without GPUs" + (f" ({'; '.join(facts.notes)})" if facts.notes else ""))
        except NvmlUnavailable as err:
            reasons.append(str(err))
        except Exception as err:  # noqa: BLE001 - a broken NVML falls back to nvidia-smi
            reasons.append(f"NVML failed: {type(err).__name__}: {err}")
    if source in ("auto", "nvidia-smi"):
        try:
            facts = facts_from_nvidia_smi(
                _smi(f"--query-gpu={QUERY_GPU}", "--format=csv,noheader,nounits"),
                _smi(f"--query-compute-apps={QUERY_APPS}", "--format=csv,noheader,nounits"),
                _smi())
            if facts.gpus:
                facts.notes.extend(reasons)
                return facts, ""
            reasons.append("nvidia-smi lists no GPU")
        except FileNotFoundError as err:
            reasons.append(str(err))
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as err:
            reasons.append(" ".join(str(err).split()))
    return None, "no NVIDIA GPU: " + "; ".join(reasons)


def visible_gpu(facts: GpuFacts, device: int | None, env: dict | None = None) -> GpuInfo | None:
    """The GPU a process sees as ``cuda:device`` (None = 0), through ``CUDA_VISIBLE_DEVICES`` (indices in
    nvidia-smi's order, or UUIDs / their prefixes). None when it is not visible."""
    env = os.environ if env is None else env
    logical = int(device or 0)
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None or not visible.strip():
        ids = [str(g.index) for g in facts.gpus] if visible is None else []
    else:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
    if not 0 <= logical < len(ids):
        return None
    want = ids[logical]
    for g in facts.gpus:
        if want.isdigit() and g.index == int(want):
            return g
        if not want.isdigit() and g.uuid and (g.uuid == want or g.uuid.startswith(want) or g.uuid == f"GPU-{want}"):
            return g
    return None
