"""How big each section is: `full` (the reference run), `quick` (a smaller run of every section)
and `smoke` (seconds; the test suite's check that every code path runs). bench/README.md states
how long `full` and `quick` took, measured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lab.chain import CLOSES, LAGS_MS
from lab.harness import CloseAfterEndCall

TracingMode = Literal["off", "otlp", "discard"]


@dataclass(frozen=True)
class BenchConfig:
    name: str
    # 1. alignment
    alignment_calls: int  # per policy
    alignment_concurrency: int  # calls in flight per policy
    alignment_warmup: int
    alignment_max_speech_s: float
    # 2. overhead (and the 500-call runs shared with 5. resources)
    single_rounds: int  # calls played one at a time
    mid_calls: int
    mid_rounds: int
    high_calls: int
    top_calls: int  # one run at the top level
    spread_s: float  # actions fire over this window once every call of a round is connected
    words_per_s: float  # speech pace of the calls under load
    warmup_calls: int
    # One fresh app process per high-load run, in this order: tracing "off", "otlp" (on, exported
    # over OTLP) or "discard" (on, spans dropped at the exporter: what recording alone costs).
    # Each traced run is compared with the untraced runs next to it, so drift cancels.
    tracing_plan: tuple[TracingMode, ...]
    # 7. levers: one fresh app process per lever, each playing the same round of this many calls
    lever_calls: int
    lever_repeats: int  # the shipped runtime runs this many times, first and last among the levers
    # 3. TLS
    tls_samples: int  # per client kind
    # 4. faults
    fault_calls: int
    fault_attempt_timeout_s: float
    lab_tracing_calls: int  # pairs of whole lab calls, tracing off and on
    # 8. capacity: concurrent calls on one app process with the real LlmAgent, ramped up
    capacity_levels: tuple[int, ...]  # tried in order until one fails its target
    capacity_spread_s: float  # each call chats once and acts within this window
    # 9. the hang-up chain: `python -m lab chain`'s cases at these playout lags and harness close
    # models (each with the guard on and off, and the chain before #17)
    chain_lags_ms: tuple[int, ...] = LAGS_MS
    chain_closes: tuple[CloseAfterEndCall, ...] = CLOSES
    # The load generators (bench.world): at most this many calls per generator process, and at
    # most this many processes (each one spawns, imports and serves an emulator).
    calls_per_generator: int = 250
    max_generators: int = 4
    seed: int = 7


FULL = BenchConfig(
    name="full",
    alignment_calls=150,
    alignment_concurrency=30,
    alignment_warmup=2,
    alignment_max_speech_s=12.0,
    single_rounds=40,
    mid_calls=100,
    mid_rounds=3,
    high_calls=500,
    top_calls=1000,
    spread_s=12.0,
    words_per_s=2.8,
    warmup_calls=50,
    tracing_plan=("off", "otlp", "discard", "off", "discard", "otlp", "off"),
    lever_calls=1000,
    lever_repeats=2,
    tls_samples=200,
    fault_calls=300,
    fault_attempt_timeout_s=0.5,
    lab_tracing_calls=16,
    capacity_levels=(25, 50, 100, 150, 200, 250, 300, 400, 500, 600, 800),
    capacity_spread_s=12.0,
)

QUICK = BenchConfig(
    name="quick",
    alignment_calls=20,
    alignment_concurrency=20,
    alignment_warmup=1,
    alignment_max_speech_s=12.0,
    single_rounds=10,
    mid_calls=100,
    mid_rounds=1,
    high_calls=300,
    top_calls=500,
    spread_s=8.0,
    words_per_s=2.8,
    warmup_calls=10,
    tracing_plan=("off", "otlp"),
    lever_calls=200,
    lever_repeats=1,
    tls_samples=40,
    fault_calls=40,
    fault_attempt_timeout_s=0.5,
    lab_tracing_calls=8,
    capacity_levels=(50, 100),
    capacity_spread_s=8.0,
)

SMOKE = BenchConfig(
    name="smoke",
    alignment_calls=2,
    alignment_concurrency=2,
    alignment_warmup=0,
    alignment_max_speech_s=2.0,
    single_rounds=2,
    mid_calls=4,
    mid_rounds=1,
    high_calls=8,
    top_calls=12,
    spread_s=0.5,
    words_per_s=40.0,
    warmup_calls=2,
    tracing_plan=("off", "otlp", "discard"),
    lever_calls=6,
    lever_repeats=1,
    tls_samples=3,
    fault_calls=6,
    fault_attempt_timeout_s=0.3,
    lab_tracing_calls=1,
    capacity_levels=(2, 4),
    capacity_spread_s=0.5,
    chain_lags_ms=(0, 400),
    chain_closes=("immediately",),  # the close that cut the whole goodbye before #17
    calls_per_generator=4,
)

CONFIGS = {c.name: c for c in (FULL, QUICK, SMOKE)}
