"""Percentiles and summaries of latency samples (seconds in, milliseconds out)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) of `values`, linearly interpolated between ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """A latency distribution, in milliseconds."""

    n: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float

    def __str__(self) -> str:
        return f"p50 {fmt_ms(self.p50)} · p99 {fmt_ms(self.p99)} · max {fmt_ms(self.max)} (n={self.n})"


def summarize(seconds: Sequence[float]) -> Summary | None:
    """Summary of samples given in seconds, or None when there are none."""
    if not seconds:
        return None
    ms = [s * 1000.0 for s in seconds]
    return Summary(
        n=len(ms),
        p50=percentile(ms, 50),
        p95=percentile(ms, 95),
        p99=percentile(ms, 99),
        max=max(ms),
        mean=sum(ms) / len(ms),
    )


def fmt_ms(value: float | None) -> str:
    """Milliseconds for a table cell: 3 significant figures, `–` when unknown."""
    if value is None or math.isnan(value):
        return "–"
    if abs(value) >= 100:
        return f"{value:.0f} ms"
    if abs(value) >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def ratio(value: float | None, floor: float | None) -> float | None:
    """`value / floor`, or None when either is unknown or the floor is not positive."""
    if value is None or floor is None or floor <= 0:
        return None
    return value / floor


def pct(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0
