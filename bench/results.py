"""Everything one benchmark run measured, as the report and the targets read it. (lab/results.py
is not a twin: its `CallResult` is one simulated call with its whole timeline, which a run of
hundreds of concurrent calls reduces to samples.)"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.alignment import AlignmentRun
from bench.capacity import CapacityResult
from bench.chain import ChainResult
from bench.config import BenchConfig
from bench.faults import FaultResult
from bench.lab_tracing import LabTracingCost
from bench.levers import LeverResult
from bench.machine import Machine
from bench.overhead import OverheadResult
from bench.tls_warm import TlsResult


@dataclass(frozen=True)
class BenchRun:
    config: BenchConfig
    machine: Machine
    started_at: str
    duration_s: float
    alignment: AlignmentRun | None = None
    overhead: OverheadResult | None = None
    tls: TlsResult | None = None
    faults: FaultResult | None = None
    lab_tracing: LabTracingCost | None = None
    levers: LeverResult | None = None
    capacity: CapacityResult | None = None
    chain: ChainResult | None = None
    plots: dict[str, str] = field(default_factory=dict)  # name → file name next to report.md
    load_at_end: str = ""
