"""``evolve doctor``: a node proves it can run a night before the night starts.

Each check (:class:`~evolve.doctor._base.Check`, one concern each) reports ``ok``, ``warn``, ``fail`` or ``skip``
with one line of what it found and what it expected, and the fix. The GPU stack is read the way the hardware
reports it (NVML through ctypes, else ``nvidia-smi``); services, stores and the workspace are asked once each.
The library never prints; :mod:`evolve.cli.doctor` does. Importing this package imports neither torch nor vllm.
"""

from pathlib import Path

from evolve.doctor._base import Check, CheckResult, Status
from evolve.doctor._context import DoctorContext, EngineNeed, LLMEndpoint
from evolve.doctor._run import CHECKS, check_names, exit_code, run_checks, write_report

__all__ = ["Check", "CheckResult", "Status", "DoctorContext", "EngineNeed", "LLMEndpoint", "CHECKS", "check_names",
           "exit_code", "run_checks", "write_report", "SCHEMA_PATH", "load_schema"]

#: the JSON Schema of ``--json`` and ``doctor.json``
SCHEMA_PATH = Path(__file__).with_name("schema.json")


def load_schema() -> dict:
    import json

    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
