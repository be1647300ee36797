"""Section 5, resources: CPU time and peak RSS of the app process per call, at the high-load
level, with tracing off and on (same workload, one fresh app process per run, alternated).

CPU is `time.process_time()` of the app process (every thread: the event loop, the span
exporter's thread) from just before the round's first connection to after the last hang-up
drained and, with tracing, every span was exported. Peak RSS is the app process's VmHWM, reset
(`/proc/self/clear_refs`) just before the round, minus its RSS at that moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from bench.app_process import AppProcess, AppStats
from bench.load import LoadRound, LoadShape, play_round, wait_drained
from bench.world import World

SHIPPED = "shipped"  # the app as `python main.py` runs it
SPANS_DISCARDED = "spans discarded"  # tracing on, the exporter drops every span: no OTLP


@dataclass(frozen=True)
class ResourceRun:
    label: str  # SHIPPED, SPANS_DISCARDED, or a lever (bench/levers.py)
    tracing: bool
    calls: int
    before: AppStats
    after: AppStats
    round: LoadRound

    @property
    def cpu_ms_per_call(self) -> float:
        return (self.after.cpu_s - self.before.cpu_s) * 1000.0 / self.calls

    @property
    def peak_kb_per_call(self) -> float:
        return (self.after.peak_rss_kb - self.before.rss_kb) / self.calls

    @property
    def export_cpu_ms_per_call(self) -> float:
        return (self.after.export_cpu_s - self.before.export_cpu_s) * 1000.0 / self.calls

    @property
    def spans_per_call(self) -> float:
        return (self.after.spans_exported - self.before.spans_exported) / self.calls


async def measured_round(
    app: AppProcess,
    world: World,
    shape: LoadShape,
    *,
    tag: str,
    label: str,
    tracing: bool,
    seed: int,
    llm: bool = False,
) -> ResourceRun:
    """One high-load round (with floor probes) between two resource readings of the app."""
    await wait_drained(app)
    before: AppStats = await app.command("mark")
    played = await play_round(app, world, shape, tag=tag, floor=True, seed=seed, llm=llm)
    await wait_drained(app)
    if tracing:
        await app.command("flush")
    after = await app.stats()
    return ResourceRun(label, tracing, shape.calls, before, after, played)


@dataclass(frozen=True)
class TracingCost:
    """Tracing's CPU per call: each traced run against the untraced runs next to it."""

    off_cpu_ms: float  # median per call over the tracing-off runs
    overhead_ms: float  # median over the OTLP runs of (run − its untraced neighbours)
    overhead_each: tuple[float, ...]  # those differences, run by run (their spread is the noise)
    recording_ms: float | None  # the same for the spans-discarded runs: recording alone
    off_peak_kb: float
    on_peak_kb: float
    spans_per_call: float
    export_cpu_ms: float  # in the OTLP exporter's thread (a part of overhead_ms)
    runs_off: int
    runs_on: int
    runs_discarded: int

    @property
    def on_cpu_ms(self) -> float:
        return self.off_cpu_ms + self.overhead_ms

    @property
    def cpu_overhead_pct(self) -> float:
        return 100.0 * self.overhead_ms / self.off_cpu_ms


def _against_neighbours(runs: Sequence[ResourceRun], label: str) -> list[float]:
    """For each traced run with `label`: its CPU per call minus the mean of the nearest untraced
    shipped run before it and after it (the machine drifts over a section; neighbours share it)."""
    diffs = []
    for i, run in enumerate(runs):
        if not run.tracing or run.label != label:
            continue
        before = next((r for r in reversed(runs[:i]) if _untraced(r)), None)
        after = next((r for r in runs[i + 1 :] if _untraced(r)), None)
        near = [r.cpu_ms_per_call for r in (before, after) if r is not None]
        if near:
            diffs.append(run.cpu_ms_per_call - sum(near) / len(near))
    return diffs


def _untraced(run: ResourceRun) -> bool:
    return not run.tracing and run.label == SHIPPED


def tracing_cost(runs: Sequence[ResourceRun]) -> TracingCost | None:
    """Tracing on versus off, from the high-load runs in the order they ran."""
    off = [r for r in runs if _untraced(r)]
    on = [r for r in runs if r.tracing and r.label == SHIPPED]
    overhead = _against_neighbours(runs, SHIPPED)
    recording = _against_neighbours(runs, SPANS_DISCARDED)
    if not off or not overhead:
        return None
    return TracingCost(
        off_cpu_ms=median(r.cpu_ms_per_call for r in off),
        overhead_ms=median(overhead),
        overhead_each=tuple(overhead),
        recording_ms=median(recording) if recording else None,
        off_peak_kb=median(r.peak_kb_per_call for r in off),
        on_peak_kb=median(r.peak_kb_per_call for r in on),
        spans_per_call=median(r.spans_per_call for r in on),
        export_cpu_ms=median(r.export_cpu_ms_per_call for r in on),
        runs_off=len(off),
        runs_on=len(overhead),
        runs_discarded=len(recording),
    )
