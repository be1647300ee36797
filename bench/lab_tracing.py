"""Tracing's share of a whole lab call's CPU: the real LlmAgent path (LiteLLM against the scripted
LLM), the harness simulator and the VoxEngine emulator, all in this process, with spans exported
over OTLP/HTTP to a receiver on 127.0.0.1. Calls alternate tracing off and on, so both halves see
the same machine; CPU is this process's (all threads, the exporter's included)."""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

from bench.config import BenchConfig
from bench.progress import Progress
from lab.otlp_receiver import OtlpReceiver
from lab.scenarios import CATALOGUE, run_scenario
from lab.tts_model import TtsModel
from telemetry import TracingObserverFactory, create_tracer_provider, tracing_observer_factory

SECTION = "lab-tracing"
FAST_TTS = TtsModel(first_audio_s=0.02, words_per_s=40)  # speech time is idle time: keep calls short


@dataclass(frozen=True)
class LabTracingCost:
    calls: int  # per side
    off_cpu_ms: float  # median CPU per call
    on_cpu_ms: float

    @property
    def overhead_pct(self) -> float:
        return (self.on_cpu_ms / self.off_cpu_ms - 1.0) * 100.0


async def _one_call(tracing: TracingObserverFactory | None) -> float:
    scenario = CATALOGUE["transfer-short"]().with_tts(FAST_TTS)
    observers = [tracing] if tracing else []
    gc.collect()  # each call starts from the same heap state, traced or not
    started = time.process_time()
    await run_scenario(scenario, observers=observers)
    return (time.process_time() - started) * 1000.0


async def run_lab_tracing(config: BenchConfig, progress: Progress) -> LabTracingCost:
    # What earlier sections left in this process stays out of every collection during this one
    # (as the app's start-up heap does in production, agent/runtime.py): a call's GC work is
    # then its own, whichever sections ran before.
    gc.collect()
    gc.freeze()
    try:
        with OtlpReceiver(decode=False) as sink:
            exporter = OTLPSpanExporter(endpoint=sink.endpoint)  # as the app's setup builds it
            provider = create_tracer_provider([exporter], service_name="bench")
            tracing = tracing_observer_factory(provider)
            try:
                await _one_call(None)  # warm-up: LiteLLM's lazy imports, first connections
                await _one_call(tracing)
                off: list[float] = []
                on: list[float] = []
                for i in range(config.lab_tracing_calls):
                    progress.say(SECTION, f"call pair {i + 1}/{config.lab_tracing_calls}")
                    off.append(await _one_call(None))
                    on.append(await _one_call(tracing))
            finally:
                provider.shutdown()
    finally:
        gc.unfreeze()
    return LabTracingCost(len(off), statistics.median(off), statistics.median(on))
