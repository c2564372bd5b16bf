"""The doctor's GPU logic on output captured from a real H100 (tests/data/gpu/, see its README): nvidia-smi's CSV
and table, NVML through ctypes, pynvml as a cross-check, torch's arch list and cudaMemGetInfo. Nothing here is
invented output: each expected number is read from a second, independent capture of the same machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolve.doctor._gpu import (
    MIB,
    facts_from_nvidia_smi,
    facts_from_nvml,
    parse_compute_apps,
    parse_query_gpu,
    parse_smi_header,
)

DATA = Path(__file__).parent / "data" / "gpu"


def text(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def js(name: str):
    return json.loads(text(name))


def smi_facts(suffix: str = ""):
    return facts_from_nvidia_smi(text(f"query-gpu{suffix}.csv"), text(f"compute-apps-uuid{suffix}.csv"),
                                 text(f"nvidia-smi{suffix}.txt"))


def test_nvidia_smi_query_and_header():
    gpus, driver = parse_query_gpu(text("query-gpu.csv"))
    assert driver == "580.159.04" and len(gpus) == 1
    g = gpus[0]
    assert (g.index, g.name, g.capability) == (0, "NVIDIA H100 80GB HBM3", (9, 0))
    assert g.uuid == js("nvml.json")["devices"][0]["uuid"]
    # what CUDA calls total (used + free, the driver's reserve apart) is what torch.cuda.mem_get_info reported
    assert g.total == js("torch-mem.json")["total"]
    assert g.reserved == js("nvml.json")["devices"][0]["memory_v2"]["reserved"]
    assert parse_smi_header(text("nvidia-smi.txt")) == ("580.159.04", (13, 0))
    # the units form says MiB: the parser's unit
    assert "memory.total [MiB]" in text("query-gpu-units.csv")


def test_compute_apps_name_the_holder():
    assert parse_compute_apps(text("compute-apps.csv"), with_uuid=False) == []
    holder = js("holder.json")
    (p,) = parse_compute_apps(text("compute-apps-held.csv"), with_uuid=False)
    assert (p.pid, p.name, p.gpu_uuid) == (holder["pid"], "python3", None)
    (q,) = parse_compute_apps(text("compute-apps-uuid-held.csv"))
    assert (q.pid, q.name, q.used) == (p.pid, p.name, p.used)
    facts = smi_facts("-held")
    assert q.gpu_uuid == facts.gpus[0].uuid
    assert facts.holders(facts.gpus[0]) == [q]
    # the holder holds at least what it allocated (its CUDA context comes on top)
    assert holder["held_bytes"] <= q.used <= holder["held_bytes"] + 1024 * MIB


def test_nvml_agrees_with_nvidia_smi_and_pynvml():
    for suffix in ("", "-held"):
        nv, smi = facts_from_nvml(js(f"nvml{suffix}.json")), smi_facts(suffix)
        assert (nv.source, smi.source) == ("nvml", "nvidia-smi")
        assert nv.driver_version == smi.driver_version and nv.cuda_version == smi.cuda_version == (13, 0)
        a, b = nv.gpus[0], smi.gpus[0]
        assert (a.index, a.uuid, a.name, a.capability) == (b.index, b.uuid, b.name, b.capability)
        for x, y in ((a.total, b.total), (a.reserved, b.reserved), (a.free, b.free), (a.used, b.used)):
            assert abs(x - y) <= MIB  # nvidia-smi rounds each figure to MiB
        assert [(p.pid, p.name) for p in nv.processes] == [(p.pid, p.name) for p in smi.processes]
        assert [p.used for p in nv.processes] == [p.used for p in smi.processes]
        ref = js(f"pynvml{suffix}.json")
        raw = js(f"nvml{suffix}.json")
        assert (raw["driver_version"], raw["cuda_driver_version"]) == (ref["driver"], ref["cuda"])
        m = raw["devices"][0]["memory"]
        assert [m["total"], m["free"], m["used"]] == ref["memory"]
        assert [[p["pid"], p["used_gpu_memory"]] for p in raw["devices"][0]["processes"]] == ref["procs"]
        assert raw["errors"] == {}


def test_driver_against_runtimes():
    from evolve.doctor._checks_gpu import driver_verdict
    from evolve.doctor._runtime import Build, parse_cuda

    drv = smi_facts().cuda_version
    torch_cuda = parse_cuda(js("torch.json")["cuda"])
    same = [Build("torch", js("torch.json")["torch"], torch_cuda, "torch/version.py"),
            Build("vllm", "0.26.0", (13,), "_C_stable_libtorch.abi3.so links libcudart.so.13")]
    assert driver_verdict(drv, same) == ("ok", [], [])
    # a runtime of the next minor runs through minor-version compatibility: warn; of the next major: fail
    newer_minor = Build("torch", "2.12.0+cu131", (13, 1), "torch/version.py")
    assert driver_verdict(drv, [*same, newer_minor])[0] == "warn"
    newer_major = Build("vllm", "0.30.0+cu140", (14, 0), "the +cu tag of its version")
    status, too_new, _ = driver_verdict(drv, [*same, newer_major])
    assert status == "fail" and too_new == [newer_major]
    assert driver_verdict(None, same)[0] == "unknown"


def test_capability_against_torchs_arch_list():
    from evolve.doctor import Status
    from evolve.doctor._checks_gpu import CapabilityCheck, capability_verdict

    t = js("torch.json")
    facts = smi_facts()
    (ok,) = CapabilityCheck().judge(facts.gpus, t["arch_list"], t["torch"])
    assert ok.status is Status.OK
    assert ok.summary == ("GPU 0 (NVIDIA H100 80GB HBM3) has compute capability 9.0; sm_90 is in torch's arch list; "
                          "expected sm_90 in torch 2.11.0+cu130's arch list (sm_75 … sm_120)")
    # the RTX 5080 (12.0) against this torch: sm_120 is there
    assert capability_verdict((12, 0), t["arch_list"])[0] == "ok"
    # the same torch without sm_90: no code for the H100, and the fix names cudaCapabilities
    without = [a for a in t["arch_list"] if a != "sm_90"]
    (bad,) = CapabilityCheck().judge(facts.gpus, without, t["torch"])
    assert bad.status is Status.FAIL and "cudaCapabilities = [ \"9.0\" ]" in bad.fix
    assert "no sm_90 (nor older 9.x code or PTX)" in bad.found


def _ctx_with(tmp_path, facts, space: bool = True):
    from evolve.doctor import DoctorContext
    from evolve.search_space import load_search_space
    from evolve.workspace import Workspace

    ctx = DoctorContext(Workspace(tmp_path / "ws"), {}, space=load_search_space("search_space_gpu") if space else None,
                        env={})
    ctx.__dict__["gpu"] = (facts, "")  # the cached probe, as on that machine
    return ctx


def test_memory_fit_names_the_fraction_and_the_holder(tmp_path):
    from evolve.doctor import Status
    from evolve.doctor._checks_gpu import CONTEXT_RESERVE, MemoryCheck, fitting_fraction

    idle, held = facts_from_nvml(js("nvml.json")), facts_from_nvml(js("nvml-held.json"))
    (ok,) = MemoryCheck().run(_ctx_with(tmp_path, idle))
    assert ok.status is Status.OK and ok.details["needed_fraction"] == 0.45
    (fail,) = MemoryCheck().run(_ctx_with(tmp_path, held))
    assert fail.status is Status.FAIL
    g = held.gpus[0]
    want = int(100 * (g.free - CONTEXT_RESERVE) / g.total) / 100
    assert fail.details["largest_fraction"] == want == fitting_fraction(g.free, g.total) == 0.27
    pid = js("holder.json")["pid"]
    assert f"pid {pid} python3 holds 56.0 GiB" in fail.found
    assert fail.fix.startswith("the largest fraction that fits now is 0.27: set embedding.gpu_memory_utilization and "
                               "rerank.gpu_memory_utilization to add up to at most 0.27")
    assert f"pid {pid} (python3)" in fail.fix
    # what a fresh process saw there: the fraction leaves room for its CUDA context
    torch_free = js("torch-mem-held.json")["free"]
    assert want * g.total < torch_free < (want + 0.05) * g.total
    # no engine this night: nothing needed, the holder still named
    (none,) = MemoryCheck().run(_ctx_with(tmp_path, held, space=False))
    assert none.status is Status.OK and none.details["holders"][0]["pid"] == pid


@pytest.mark.parametrize("visible, expect", [(None, 0), ("0", 0), ("GPU-e7639b72", 0), ("1", None), ("", None)])
def test_cuda_visible_devices_maps_to_the_physical_gpu(visible, expect):
    from evolve.doctor._gpu import visible_gpu

    facts = smi_facts()
    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    g = visible_gpu(facts, None, env)
    assert (g.index if g else None) == expect
