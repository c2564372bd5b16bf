"""NVML through ctypes (``libnvidia-ml.so.1``, installed with the NVIDIA driver): the raw readings, as JSON.

:func:`nvml_readings` asks the driver's own library what ``nvidia-smi`` shows, without a CUDA context and without
a Python binding: the driver version, the highest CUDA version it supports (``nvmlSystemGetCudaDriverVersion``,
the number ``cuDriverGetVersion`` returns), and per GPU its name, UUID, memory, compute capability and the
processes holding memory (with their names from ``nvmlSystemGetProcessName``). Every call is guarded: a reading
that fails is recorded under ``errors`` with NVML's own error string, never raised. ``python -m
evolve.doctor._nvml`` prints the readings (the GPU fixtures in ``tests/data/gpu/`` were made this way).

:func:`evolve.doctor._gpu.facts_from_nvml` turns the readings into :class:`~evolve.doctor._gpu.GpuFacts`.
Imports neither torch nor vllm.
"""

from __future__ import annotations

import ctypes
import json
import sys

__all__ = ["NvmlUnavailable", "nvml_readings", "LIBRARY"]

LIBRARY = "libnvidia-ml.so.1"

NVML_SUCCESS = 0
NVML_ERROR_INSUFFICIENT_SIZE = 7
#: usedGpuMemory when the driver cannot tell (e.g. inside some containers)
NVML_VALUE_NOT_AVAILABLE = 0xFFFFFFFFFFFFFFFF


class NvmlUnavailable(RuntimeError):
    """No NVML here: the library is missing (no NVIDIA driver) or ``nvmlInit`` failed."""


class _Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class _MemoryV2(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("total", ctypes.c_ulonglong), ("reserved", ctypes.c_ulonglong),
                ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class _ProcessInfo(ctypes.Structure):  # nvmlProcessInfo_t (the _v2/_v3 calls)
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong),
                ("gpuInstanceId", ctypes.c_uint), ("computeInstanceId", ctypes.c_uint)]


class _ProcessInfoV1(ctypes.Structure):  # nvmlProcessInfo_v1_t (the unversioned call)
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


class _Nvml:
    def __init__(self, path: str = LIBRARY):
        try:
            self.lib = ctypes.CDLL(path)
        except OSError as err:
            why = "not found" if "cannot open shared object" in str(err) else f"cannot be loaded ({err})"
            raise NvmlUnavailable(f"{path} {why}") from None
        rc = self._call(("nvmlInit_v2", "nvmlInit"))
        if rc != NVML_SUCCESS:
            raise NvmlUnavailable(f"nvmlInit failed: {self.error(rc)}")

    def fn(self, names):
        for name in (names,) if isinstance(names, str) else names:
            f = getattr(self.lib, name, None)
            if f is not None:
                return name, f
        return None, None

    def _call(self, names, *args) -> int:
        _, f = self.fn(names)
        if f is None:
            return -1
        f.restype = ctypes.c_int
        return int(f(*args))

    def error(self, rc: int) -> str:
        if rc == -1:
            return "function not in this libnvidia-ml"
        f = getattr(self.lib, "nvmlErrorString", None)
        if f is None:
            return f"NVML error {rc}"
        f.restype = ctypes.c_char_p
        msg = f(ctypes.c_int(rc))
        return f"{msg.decode(errors='replace') if msg else 'unknown'} ({rc})"

    def text(self, names, *head, size: int = 256) -> str:
        buf = ctypes.create_string_buffer(size)
        rc = self._call(names, *head, buf, ctypes.c_uint(size))
        if rc != NVML_SUCCESS:
            raise _Failed(names, self.error(rc))
        return buf.value.decode(errors="replace")

    def shutdown(self) -> None:
        self._call("nvmlShutdown")


class _Failed(Exception):
    def __init__(self, names, message: str):
        self.name = names if isinstance(names, str) else names[0]
        super().__init__(message)


def _guard(errors: dict, key: str, fn, default=None):
    try:
        return fn()
    except _Failed as err:
        errors[key] = f"{err.name}: {err}"
    except Exception as err:  # noqa: BLE001 - a reading that fails is recorded, never raised
        errors[key] = f"{type(err).__name__}: {err}"
    return default


def _memory(nv: _Nvml, handle) -> dict:
    m = _Memory()
    rc = nv._call("nvmlDeviceGetMemoryInfo", handle, ctypes.byref(m))
    if rc != NVML_SUCCESS:
        raise _Failed("nvmlDeviceGetMemoryInfo", nv.error(rc))
    return {"total": m.total, "free": m.free, "used": m.used}


def _memory_v2(nv: _Nvml, handle) -> dict:
    m = _MemoryV2()
    m.version = ctypes.sizeof(_MemoryV2) | (2 << 24)
    rc = nv._call("nvmlDeviceGetMemoryInfo_v2", handle, ctypes.byref(m))
    if rc != NVML_SUCCESS:
        raise _Failed("nvmlDeviceGetMemoryInfo_v2", nv.error(rc))
    return {"total": m.total, "reserved": m.reserved, "free": m.free, "used": m.used}


def _capability(nv: _Nvml, handle) -> list[int]:
    major, minor = ctypes.c_int(), ctypes.c_int()
    rc = nv._call("nvmlDeviceGetCudaComputeCapability", handle, ctypes.byref(major), ctypes.byref(minor))
    if rc != NVML_SUCCESS:
        raise _Failed("nvmlDeviceGetCudaComputeCapability", nv.error(rc))
    return [major.value, minor.value]


def _processes(nv: _Nvml, handle, errors: dict, key: str) -> list[dict]:
    for names, struct in ((("nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2"),
                           _ProcessInfo), ("nvmlDeviceGetComputeRunningProcesses", _ProcessInfoV1)):
        name, f = nv.fn(names)
        if f is None:
            continue
        f.restype = ctypes.c_int
        count = ctypes.c_uint(0)
        rc = int(f(handle, ctypes.byref(count), None))
        if rc == NVML_SUCCESS and count.value == 0:
            return []
        if rc not in (NVML_SUCCESS, NVML_ERROR_INSUFFICIENT_SIZE):
            errors[key] = f"{name}: {nv.error(rc)}"
            continue
        n = count.value + 16  # processes may start between the two calls
        infos = (struct * n)()
        count = ctypes.c_uint(n)
        rc = int(f(handle, ctypes.byref(count), infos))
        if rc != NVML_SUCCESS:
            errors[key] = f"{name}: {nv.error(rc)}"
            continue
        out = []
        for info in infos[: count.value]:
            used = int(info.usedGpuMemory)
            proc = {"pid": int(info.pid), "used_gpu_memory": None if used == NVML_VALUE_NOT_AVAILABLE else used,
                    "name": None}
            proc["name"] = _guard(errors, f"{key}.{info.pid}.name",
                                  lambda pid=info.pid: nv.text("nvmlSystemGetProcessName", ctypes.c_uint(pid), size=1024))
            out.append(proc)
        errors.pop(key, None)
        return out
    errors[key] = "no nvmlDeviceGetComputeRunningProcesses in this libnvidia-ml"
    return []


def nvml_readings(path: str = LIBRARY) -> dict:
    """Everything the doctor reads from NVML, as plain JSON types (bytes, not MiB). Raises
    :class:`NvmlUnavailable` when there is no NVML; a single failed reading lands in ``errors``."""
    nv = _Nvml(path)
    errors: dict[str, str] = {}
    try:
        out: dict = {
            "source": "nvml",
            "nvml_version": _guard(errors, "nvml_version", lambda: nv.text("nvmlSystemGetNVMLVersion")),
            "driver_version": _guard(errors, "driver_version", lambda: nv.text("nvmlSystemGetDriverVersion")),
        }

        def cuda_version():
            v = ctypes.c_int()
            rc = nv._call(("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"), ctypes.byref(v))
            if rc != NVML_SUCCESS:
                raise _Failed("nvmlSystemGetCudaDriverVersion", nv.error(rc))
            return v.value

        out["cuda_driver_version"] = _guard(errors, "cuda_driver_version", cuda_version)
        count = ctypes.c_uint()
        rc = nv._call(("nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"), ctypes.byref(count))
        if rc != NVML_SUCCESS:
            errors["device_count"] = f"nvmlDeviceGetCount: {nv.error(rc)}"
        devices = []
        for i in range(count.value if rc == NVML_SUCCESS else 0):
            handle = ctypes.c_void_p()
            rc = nv._call(("nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"), ctypes.c_uint(i),
                          ctypes.byref(handle))
            if rc != NVML_SUCCESS:
                errors[f"device.{i}"] = f"nvmlDeviceGetHandleByIndex: {nv.error(rc)}"
                continue
            k = f"device.{i}"
            devices.append({
                "index": i,
                "name": _guard(errors, f"{k}.name", lambda h=handle: nv.text("nvmlDeviceGetName", h)),
                "uuid": _guard(errors, f"{k}.uuid", lambda h=handle: nv.text("nvmlDeviceGetUUID", h)),
                "memory": _guard(errors, f"{k}.memory", lambda h=handle: _memory(nv, h)),
                "memory_v2": _guard(errors, f"{k}.memory_v2", lambda h=handle: _memory_v2(nv, h)),
                "compute_capability": _guard(errors, f"{k}.compute_capability", lambda h=handle: _capability(nv, h)),
                "processes": _processes(nv, handle, errors, f"{k}.processes"),
            })
        out["devices"] = devices
        out["errors"] = errors
        return out
    finally:
        nv.shutdown()


if __name__ == "__main__":  # pragma: no cover - run on a GPU host to capture fixtures
    try:
        readings = nvml_readings()
    except NvmlUnavailable as err:
        print(json.dumps({"source": "nvml", "unavailable": str(err)}))
        sys.exit(1)
    print(json.dumps(readings, indent=2, sort_keys=True))
