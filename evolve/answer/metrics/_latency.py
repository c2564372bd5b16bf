"""Latency percentiles: p50 and p95 of the time to the first token and of the total time per answer.

Percentiles interpolate linearly between the order statistics (the "linear" method, numpy's default, type 7 of
Hyndman and Fan): with the n values sorted ``x[0] <= ... <= x[n-1]``, the q-th percentile is at position
``h = (n - 1) * q / 100``, ``x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)])``. Missing values
(None: an answer the LLM was not asked for has no first token) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["percentile", "latency_summary"]


def percentile(values: Iterable[float | None], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of the values that are not None; None when there are none."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile: expected q within 0..100, got {q}")
    xs = sorted(float(v) for v in values if v is not None)
    if not xs:
        return None
    h = (len(xs) - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def latency_summary(ttft_ms: Iterable[float | None], total_ms: Iterable[float | None]) -> dict[str, float | None]:
    """``{"ttft_p50_ms", "ttft_p95_ms", "total_p50_ms", "total_p95_ms"}``."""
    ttft, total = list(ttft_ms), list(total_ms)
    return {
        "ttft_p50_ms": percentile(ttft, 50),
        "ttft_p95_ms": percentile(ttft, 95),
        "total_p50_ms": percentile(total, 50),
        "total_p95_ms": percentile(total, 95),
    }
