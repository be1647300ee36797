"""What the app process carries to be measured: memory readings, a span-counting exporter,
the action marks observer, and the floor prober (a bare pooled POST from the app's process)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from agent.action_events import ActionEvent, Released, Sent
from agent.actions import ControlAction
from agent.call_observer import CallInfo, CallObserver


@dataclass(frozen=True)
class FloorSample:
    id: str
    sent_at: float  # just before `client.post`
    answered_at: float
    ok: bool


def proc_status() -> dict[str, int]:
    """VmRSS / VmHWM of this process in kB (Linux); empty elsewhere."""
    values: dict[str, int] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return values


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux `clear_refs` 5); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class CountingExporter:
    """Wraps the OTLP exporter: counts the spans that went out and the CPU the exporting took
    (on the span processor's thread: protobuf encoding and the HTTP request)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.count = 0
        self.cpu_s = 0.0

    def export(self, spans: Sequence[Any]) -> Any:
        self.count += len(spans)
        started = time.thread_time()
        try:
            return self._inner.export(spans)
        finally:
            self.cpu_s += time.thread_time() - started

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self._inner.force_flush(timeout_millis))


class _Discard:
    """An exporter that drops what it is given: tracing's cost without the OTLP export."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class Tracing:
    """Tracing as the app turns it on: the `telemetry` package's observer, through its tracer
    provider (batched, redacted), exported over OTLP/HTTP to `endpoint` (None: discarded)."""

    def __init__(self, endpoint: str | None) -> None:
        import requests
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import SpanExporter

        import telemetry

        session = requests.Session()
        session.trust_env = False  # loopback only, whatever the environment says
        # The SDK's OTLP/HTTP exporter, as the app's setup builds it (telemetry.setup).
        inner = _Discard() if endpoint is None else OTLPSpanExporter(endpoint=endpoint, session=session)
        self.exporter = CountingExporter(inner)
        exporter: SpanExporter = self.exporter  # type: ignore[assignment]
        self.provider = telemetry.create_tracer_provider([exporter], shutdown_on_exit=False)
        factory = telemetry.tracing_observer_factory(self.provider)
        assert factory is not None
        self.factory = factory


class Marks:
    """Observer factory recording, per call, when its action was released and first sent: the
    app's side of the overhead breakdown (two dict writes per action)."""

    def __init__(self) -> None:
        self.at: dict[str, dict[str, float]] = {}

    def __call__(self, call: CallInfo) -> CallObserver:
        return _MarkObserver(self.at.setdefault(call.call_id, {}))


class _MarkObserver(CallObserver):
    def __init__(self, marks: dict[str, float]) -> None:
        self._marks = marks

    def action_event(self, action: ControlAction, event: ActionEvent, at: float) -> None:
        if isinstance(event, (Released, Sent)):
            self._marks.setdefault(event.name, at)


async def floor_probes(
    client: httpx.AsyncClient, origins: Sequence[str], urls: Sequence[str], delays: Sequence[float]
) -> list[FloorSample]:
    """Bare POSTs of a control body, one per URL at its delay, on a pooled client warmed to
    each origin."""
    for origin in origins:
        await client.head(origin + "/")
    samples: list[FloorSample] = []
    start = anyio.current_time()

    async def probe(url: str, delay: float) -> None:
        await anyio.sleep_until(start + delay)
        action_id = str(uuid.uuid4())
        body = json.dumps({"id": action_id, "action": "call_transfer", "summary": "floor"}).encode()
        headers = {"content-type": "application/json", "x-idempotency-key": action_id}
        sent = time.perf_counter()
        try:
            response = await client.post(url, content=body, headers=headers, timeout=5.0)
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        samples.append(FloorSample(action_id, sent, time.perf_counter(), ok))

    async with anyio.create_task_group() as tg:
        for url, delay in zip(urls, delays, strict=True):
            tg.start_soon(probe, url, delay)
    return samples
