"""PNG plots for the report (matplotlib, headless): distributions over a run's many calls.
(lab/plot.py is not a twin: it draws one call's timeline.)"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from bench.alignment import CallOutcome
from bench.faults import FaultResult
from bench.overhead import Level
from bench.stats import Summary

COLORS = {"fixed-sleeps": "#d95f02", "turn-end": "#1b9e77"}
LABELS = {"fixed-sleeps": "published fixed sleeps", "turn-end": "ours (turn end)"}


def _cdf(values: Sequence[float]) -> tuple[list[float], list[float]]:
    ordered = sorted(values)
    n = len(ordered)
    return ordered, [(i + 1) / n for i in range(n)]


def alignment_plot(outcomes: Sequence[CallOutcome], path: Path) -> Path:
    """Offset of each action against its confirmation, both policies."""
    fig, (scatter, cdf, zoom) = plt.subplots(1, 3, figsize=(16, 4.8))
    policies = [p for p in ("fixed-sleeps", "turn-end") if any(o.policy == p for o in outcomes)]
    floor_y = min([o.offset_s for o in outcomes if o.offset_s is not None] + [-1.0]) - 1.0
    for policy in policies:
        mine = [o for o in outcomes if o.policy == policy]
        fired = [o for o in mine if o.offset_s is not None and o.speech_s is not None]
        lost = [o for o in mine if not o.delivered]
        scatter.scatter(
            [o.speech_s or 0.0 for o in fired],
            [o.offset_s or 0.0 for o in fired],
            s=14,
            alpha=0.7,
            color=COLORS[policy],
            label=LABELS[policy],
        )
        if lost:
            scatter.scatter(
                [o.speech_s or o.planned_speech_s for o in lost],
                [floor_y] * len(lost),
                marker="x",
                s=22,
                color=COLORS[policy],
                label=f"{LABELS[policy]}: never delivered ({len(lost)})",
            )
        offsets = [o.offset_s for o in mine if o.delivered and o.offset_s is not None]
        if offsets:
            xs, ys = _cdf(offsets)
            share = len(offsets) / len(mine)
            cdf.step(xs, [y * share for y in ys], where="post", color=COLORS[policy], label=LABELS[policy])
    scatter.axhline(0.0, color="black", linewidth=0.8)
    scatter.axhspan(floor_y + 0.5, 0.0, color="red", alpha=0.05)
    scatter.set_xlabel("confirmation speech played (s)")
    scatter.set_ylabel("POST arrival − end of confirmation (s)")
    scatter.set_title("Each call: < 0 cuts the caller off, > 0 is dead air")
    scatter.text(0.02, floor_y + 0.15, "never delivered", fontsize=7, transform=scatter.get_yaxis_transform())
    scatter.legend(fontsize=7, loc="lower right")
    cdf.axvline(0.0, color="black", linewidth=0.8)
    cdf.set_xlabel("POST arrival − end of confirmation (s)")
    cdf.set_ylabel("share of calls delivered by then")
    cdf.set_ylim(0, 1.02)
    cdf.set_title("CDF (the gap to 1.0 never arrived)")
    cdf.legend(fontsize=8, loc="upper left")
    ours = [
        o.offset_s * 1000
        for o in outcomes
        if o.policy == "turn-end" and o.delivered and o.offset_s is not None
    ]
    if ours:
        zoom.hist(ours, bins=30, color=COLORS["turn-end"])
    zoom.set_xlabel("POST arrival − end of confirmation (ms)")
    zoom.set_ylabel("calls")
    zoom.set_title("Ours, zoomed in")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ms(summary: Summary | None, which: str) -> float:
    return float(getattr(summary, which)) if summary is not None else 0.0


def overhead_plot(levels: Sequence[Level], path: Path) -> Path:
    """p50 / p99 of our path and of the floor at each load level."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    labels = [level.label for level in levels]
    width = 0.2
    series = [
        ("ours", "p50", "#1b9e77", 1.0),
        ("ours", "p99", "#1b9e77", 0.5),
        ("floor", "p50", "#7570b3", 1.0),
        ("floor", "p99", "#7570b3", 0.5),
    ]
    for k, (which, pick, color, alpha) in enumerate(series):
        xs = [i + (k - 1.5) * width for i in range(len(levels))]
        values = [_ms(lv.ours if which == "ours" else lv.floor, pick) for lv in levels]
        ax.bar(xs, values, width, color=color, alpha=alpha, label=f"{which} {pick}")
    ax.set_xticks(range(len(levels)), labels, rotation=15, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("ms (log)")
    ax.set_title("agent_state idle → POST at VoxEngine, against a bare pooled POST")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def faults_plot(result: FaultResult, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    if result.time_to_accepted_s:
        xs, ys = _cdf(result.time_to_accepted_s)
        share = len(result.time_to_accepted_s) / result.calls
        ax.step(xs, [y * share for y in ys], where="post", color="#1b9e77")
    ax.set_xlabel("turn end → accepted POST (s)")
    ax.set_ylabel("share of actions accepted by then")
    ax.set_ylim(0, 1.02)
    ax.set_title("Delivery under 30% 5xx, 10% hangs, 5% dropped connections")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
