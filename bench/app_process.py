"""The app under load, in its own process: `TelephonyAgentApp` with the LLM-free agent on
uvicorn (127.0.0.1), optionally traced, plus a bare pooled httpx client for the floor probes.

The benchmark process plays the outside world (harness simulators, the VoxEngine emulator), so
the app has a core and an event loop to itself, as in production, and its CPU time and memory
are its own. Both processes stamp events with `time.perf_counter()`, which on Linux is the
system-wide monotonic clock, so a harness timestamp and a POST's arrival compare directly.

The parent drives the child over a pipe: `stats`, `mark` (collect, reset the peak RSS), `floor`
(bare POSTs at given delays), `health` (event-loop lag, GC pauses), `marks` (when each action
was released and sent), `flush` (export queued spans), `stop`.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, Literal

import anyio
import httpx

from agent.control_transport import ControlNetwork, make_control_client
from agent.retry_policy import RetryPolicy
from bench.app_instruments import Marks, Tracing, floor_probes, proc_status, reset_peak_rss
from bench.progress import quiet_logs
from lab.asgi_server import serve_on_loopback, server_port
from lab.call_lab import lab_settings

START_TIMEOUT_S = 60.0
LAG_TICK_S = 0.02

# How the app process treats Python's cyclic GC. "default" is the app as shipped; the others are
# diagnostics for the report (a proposed startup change, and GC off as the bound it approaches).
GcMode = Literal["default", "freeze", "off"]


@dataclass(frozen=True)
class AppOptions:
    otlp_endpoint: str | None = None  # tracing on: export spans over OTLP/HTTP to this URL
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    gc_mode: GcMode = "default"
    # How the app reaches the emulator by name (`VoxEngineEmulator.network`; `warmed_app` sets it).
    network: ControlNetwork | None = None


@dataclass(frozen=True)
class LoopHealth:
    """Since the last ask: event-loop lag samples and cyclic-GC pauses (generation, seconds)."""

    lag_s: tuple[float, ...]
    gc_pauses: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class AppStats:
    cpu_s: float  # time.process_time() of the app process
    rss_kb: int
    peak_rss_kb: int  # VmHWM since the last `mark` (or since start if it cannot be reset)
    peak_resettable: bool
    live_calls: int
    spans_exported: int
    export_cpu_s: float  # CPU spent in the OTLP exporter (a part of cpu_s)


class _Child:
    def __init__(self, conn: Connection, options: AppOptions) -> None:
        self.conn = conn
        self.options = options
        self.lag: list[float] = []
        self.gc_pauses: list[tuple[int, float]] = []
        self._gc_started = 0.0
        self.resettable = True
        self.marks = Marks()

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses.append((int(info["generation"]), time.perf_counter() - self._gc_started))

    async def run(self) -> None:
        from agent.app import TelephonyAgentApp
        from bench.light_agent import build_tool_driven_agent

        assert self.options.network is not None, "AppOptions.network: the emulator to reach"
        settings = lab_settings(self.options.network, retry=self.options.retry)
        http = make_control_client(settings.control)
        floor = make_control_client(settings.control)  # the same connection layer, no app on top
        tracing = Tracing(self.options.otlp_endpoint) if self.options.otlp_endpoint else None
        app = TelephonyAgentApp(
            settings,
            observers=[self.marks, *([tracing.factory] if tracing else [])],
            agent_factory=build_tool_driven_agent,
            http_client=http,
        )
        if self.options.gc_mode == "freeze":  # startup objects out of every later collection
            gc.collect()
            gc.freeze()
        elif self.options.gc_mode == "off":
            gc.disable()
        gc.callbacks.append(self._on_gc)
        try:
            async with serve_on_loopback(app.fastapi_app, graceful_shutdown_s=2) as server:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._sample_lag)
                    self.conn.send(("ready", f"ws://127.0.0.1:{server_port(server)}/ws"))
                    await self._serve_commands(app, floor, tracing)
                    tg.cancel_scope.cancel()
        finally:
            await floor.aclose()
            await http.aclose()
            if tracing is not None:
                await anyio.to_thread.run_sync(tracing.provider.shutdown)

    async def _serve_commands(self, app: Any, floor: httpx.AsyncClient, tracing: Tracing | None) -> None:
        while True:
            command, *args = await anyio.to_thread.run_sync(self.conn.recv)
            if command == "stop":
                self.conn.send(("ok", None))
                return
            if command == "mark":
                gc.collect()
                self.resettable = reset_peak_rss()
                reply: Any = self._stats(app, tracing)
            elif command == "stats":
                reply = self._stats(app, tracing)
            elif command == "flush":
                reply = await anyio.to_thread.run_sync(tracing.provider.force_flush) if tracing else True
            elif command == "health":
                reply = LoopHealth(tuple(self.lag), tuple(self.gc_pauses))
                self.lag, self.gc_pauses = [], []
            elif command == "marks":
                reply, self.marks.at = self.marks.at, {}
            elif command == "floor":
                reply = await floor_probes(floor, *args)
            else:
                reply = ValueError(f"unknown command {command!r}")
            self.conn.send(("ok", reply))

    def _stats(self, app: Any, tracing: Tracing | None) -> AppStats:
        status = proc_status()
        return AppStats(
            cpu_s=time.process_time(),
            rss_kb=status.get("VmRSS", 0),
            peak_rss_kb=status.get("VmHWM", 0),
            peak_resettable=self.resettable,
            live_calls=len(app.live_calls),
            spans_exported=tracing.exporter.count if tracing else 0,
            export_cpu_s=tracing.exporter.cpu_s if tracing else 0.0,
        )

    async def _sample_lag(self) -> None:
        while True:
            due = anyio.current_time() + LAG_TICK_S
            await anyio.sleep_until(due)
            self.lag.append(anyio.current_time() - due)


def _child_main(conn: Connection, options: AppOptions) -> None:
    quiet_logs()
    try:
        anyio.run(_Child(conn, options).run)
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()


class AppProcess:
    """`async with AppProcess(options) as app:` → `app.ws_url`, `await app.command(...)`."""

    def __init__(self, options: AppOptions) -> None:
        ctx = get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process: BaseProcess = ctx.Process(
            target=_child_main, args=(child, options), name="bench-app", daemon=True
        )
        self._child_conn = child
        self._lock = anyio.Lock()
        self.ws_url = ""

    @property
    def pid(self) -> int | None:
        return self._process.pid

    async def __aenter__(self) -> AppProcess:
        self._process.start()
        self._child_conn.close()
        status, self.ws_url = await self._receive(START_TIMEOUT_S)
        if status != "ready":
            raise RuntimeError(f"app process failed to start: {status}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self.command("stop", timeout_s=15)
            except (EOFError, OSError, RuntimeError):
                pass
            await anyio.to_thread.run_sync(self._process.join, 10)
            if self._process.is_alive():
                self._process.terminate()  # our own child, by its handle
                await anyio.to_thread.run_sync(self._process.join, 5)
            self._conn.close()

    async def command(self, name: str, *args: Any, timeout_s: float = 120.0) -> Any:
        async with self._lock:
            self._conn.send((name, *args))
            _, reply = await self._receive(timeout_s)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def stats(self) -> AppStats:
        stats: AppStats = await self.command("stats")
        return stats

    async def _receive(self, timeout_s: float) -> tuple[str, Any]:
        def receive() -> tuple[str, Any]:
            if not self._conn.poll(timeout_s):
                raise RuntimeError(f"app process did not answer within {timeout_s:g} s")
            message: tuple[str, Any] = self._conn.recv()
            return message

        return await anyio.to_thread.run_sync(receive)
