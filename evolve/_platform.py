"""Process environment shared by the model backends: GPU visibility, quiet Hugging Face loaders, API keys.

Imports neither torch nor vllm.
"""

from __future__ import annotations

import os

__all__ = ["cuda_visible", "quiet_hf", "api_key_from_env"]


def gpu_device_nodes() -> list[str]:
    """The NVIDIA device nodes of this machine (``/dev/nvidia0`` ...); none on a machine without a GPU."""
    import glob

    return sorted(glob.glob("/dev/nvidia[0-9]*"))


def cuda_visible() -> bool:
    """Whether a CUDA GPU is visible, judged from the device nodes and ``CUDA_VISIBLE_DEVICES`` (no torch).

    A machine without ``/dev/nvidia*`` has no GPU whatever ``CUDA_VISIBLE_DEVICES`` says (`evolve run --gpus`
    sets it for every worker, also where the workers end up on the CPU)."""
    if not gpu_device_nodes():
        return False
    v = os.environ.get("CUDA_VISIBLE_DEVICES")
    return v is None or v.strip() not in {"", "-1"}


def quiet_hf() -> None:
    """Offline, and no progress bars or info logs from transformers/huggingface_hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover - older or missing transformers
        pass


def api_key_from_env(name: str | None, field: str) -> str | None:
    """The API key held by the environment variable ``name`` (the key itself never appears in config)."""
    if not name:
        return None
    key = os.environ.get(name)
    if not key:
        from evolve.errors import ConfigError

        raise ConfigError(f"{field}: expected the environment variable {name} to hold the API key, it is not set")
    return key
