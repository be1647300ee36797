"""Small Markdown and number-formatting helpers for the report."""

from __future__ import annotations

from collections.abc import Sequence

from bench.noise import Noise
from bench.stats import Summary, ratio


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def p(summary: Summary | None, which: str) -> float | None:
    """A percentile (or `max`, `mean`) of `summary`, None when there is no summary."""
    return getattr(summary, which) if summary is not None else None


def others(noise: Noise | None) -> str:
    return "–" if noise is None else f"{noise.others_pct:.0f}%"


def diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def ratio_cell(a: float | None, b: float | None) -> str:
    r = ratio(a, b)
    return "–" if r is None else f"{r:.2f}×"
