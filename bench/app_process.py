"""The app under load, in its own process: `TelephonyAgentApp` on uvicorn (127.0.0.1) with the
LLM-free agent, or with the real `LlmAgent` against a scripted LLM (`llm_api_base`), optionally
traced, plus a bare pooled httpx client for the floor probes.
It runs as `python main.py` does (`agent.runtime`: event loop, HTTP parser, GC policy) unless
the options say otherwise, and with `workers` > 1 as several processes on one listening socket,
as uvicorn's workers run.

The outside world (harness simulators, VoxEngine emulators, the scripted LLM) runs in generator
processes of its own (`bench.world`), so the app has an event loop to itself, as in production,
and its CPU time and memory are its own. Every process stamps events with `time.perf_counter()`,
which on Linux is the system-wide monotonic clock, so a harness timestamp and a POST's arrival
compare directly.

The parent drives each child over a pipe: `stats`, `mark` (collect, reset the peak RSS), `floor`
(bare POSTs at given delays), `health` (event-loop lag, GC pauses), `marks` (when each action
was released and sent), `flush` (export queued spans), `collect` (a full collection: what it
found, how long it took), `stop`.
"""

from __future__ import annotations

import cProfile
import dataclasses
import gc
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

import anyio
import httpx

from agent.app import TelephonyAgentApp
from agent.control_transport import ControlNetwork, make_control_client
from agent.conversation import build_llm_agent
from agent.retry_policy import RetryPolicy
from agent.runtime import HTTP_PARSER, SERVER_GC, EventLoop, GcPolicy, HttpParser, event_loop
from bench.app_instruments import Marks, Tracing, floor_probes, proc_status, reset_peak_rss
from bench.child import ChildProcess, run_child, sample_lag, serve_parent
from bench.light_agent import build_tool_driven_agent
from lab.asgi_server import serve_on_loopback
from lab.call_lab import lab_settings


@dataclass(frozen=True)
class AppOptions:
    otlp_endpoint: str | None = None  # tracing on: export spans over OTLP/HTTP to this URL
    discard_spans: bool = False  # tracing on, every span dropped by the exporter (no OTLP)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # The server's runtime (agent/runtime.py); the defaults are what `python main.py` runs.
    loop: EventLoop = field(default_factory=event_loop)
    http: HttpParser = HTTP_PARSER
    gc: GcPolicy = SERVER_GC
    workers: int = 1
    # The real LlmAgent (agent.conversation) against this OpenAI-compatible endpoint (the
    # scripted LLM); None: the LLM-free agent of bench.light_agent.
    llm_api_base: str | None = None
    # How the app reaches the emulator by name (`VoxEngineEmulator.network`; `warmed_app` sets it).
    network: ControlNetwork | None = None
    profile_path: str | None = None  # cProfile the app process; stats written here at stop


@dataclass(frozen=True)
class LoopHealth:
    """Since the last ask: event-loop lag samples and cyclic-GC pauses (generation, seconds)."""

    lag_s: tuple[float, ...]
    gc_pauses: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class AppStats:
    cpu_s: float  # time.process_time() of the app process
    loop_cpu_s: float  # of which the event loop's thread (time.thread_time() there)
    rss_kb: int
    peak_rss_kb: int  # VmHWM since the last `mark` (or since start if it cannot be reset)
    peak_resettable: bool
    live_calls: int
    spans_exported: int
    export_cpu_s: float  # CPU spent in the OTLP exporter (a part of cpu_s)


class _Child:
    def __init__(self, conn: Connection, options: AppOptions, sock: socket.socket) -> None:
        self.conn = conn
        self.options = options
        self.sock = sock
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
        assert self.options.network is not None, "AppOptions.network: the emulators to reach"
        llm = self.options.llm_api_base
        settings = lab_settings(self.options.network, retry=self.options.retry)
        if llm is not None:
            settings = dataclasses.replace(settings, llm_api_base=llm)
        http = make_control_client(settings.control)
        floor = make_control_client(settings.control)  # the same connection layer, no app on top
        traced = self.options.otlp_endpoint is not None or self.options.discard_spans
        tracing = Tracing(self.options.otlp_endpoint) if traced else None
        app = TelephonyAgentApp(
            settings,
            observers=[self.marks, *([tracing.factory] if tracing else [])],
            agent_factory=build_tool_driven_agent if llm is None else build_llm_agent,
            http_client=http,
            gc_policy=self.options.gc,  # applied as the server starts, as in production
        )
        try:
            async with serve_on_loopback(
                app.fastapi_app, graceful_shutdown_s=2, http=self.options.http, sock=self.sock
            ):
                gc.callbacks.append(self._on_gc)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(sample_lag, self.lag)
                    await serve_parent(self.conn, None, partial(self._command, app, floor, tracing))
                    tg.cancel_scope.cancel()
        finally:
            await floor.aclose()
            await http.aclose()
            if tracing is not None:
                await anyio.to_thread.run_sync(tracing.provider.shutdown)

    async def _command(
        self, app: Any, floor: httpx.AsyncClient, tracing: Tracing | None, command: str, args: list[Any]
    ) -> Any:
        if command == "mark":
            gc.collect()
            self.resettable = reset_peak_rss()
            return self._stats(app, tracing)
        if command == "stats":
            return self._stats(app, tracing)
        if command == "flush":
            return await anyio.to_thread.run_sync(tracing.provider.force_flush) if tracing else True
        if command == "health":
            health = LoopHealth(tuple(self.lag), tuple(self.gc_pauses))
            self.lag.clear()
            self.gc_pauses.clear()
            return health
        if command == "marks":
            marks, self.marks.at = self.marks.at, {}
            return marks
        if command == "collect":  # the garbage a full collection finds now, and its pause
            started = time.perf_counter()
            return gc.collect(), time.perf_counter() - started
        if command == "floor":
            return await floor_probes(floor, *args)
        raise ValueError(f"unknown command {command!r}")

    def _stats(self, app: Any, tracing: Tracing | None) -> AppStats:
        status = proc_status()
        return AppStats(
            cpu_s=time.process_time(),
            loop_cpu_s=time.thread_time(),
            rss_kb=status.get("VmRSS", 0),
            peak_rss_kb=status.get("VmHWM", 0),
            peak_resettable=self.resettable,
            live_calls=len(app.live_calls),
            spans_exported=tracing.exporter.count if tracing else 0,
            export_cpu_s=tracing.exporter.cpu_s if tracing else 0.0,
        )


def child_main(conn: Connection, options: AppOptions, sock: socket.socket) -> None:
    """The app process's body."""
    profiler = cProfile.Profile() if options.profile_path else None
    if profiler is not None:
        profiler.enable()
    try:
        run_child(conn, _Child(conn, options, sock).run, uvloop=options.loop == "uvloop")
    finally:
        if profiler is not None and options.profile_path:
            profiler.disable()
            profiler.dump_stats(options.profile_path)


class AppProcess:
    """`async with AppProcess(options) as app:` → `app.ws_url`, `await app.command(...)`.

    With `options.workers` > 1, that many processes accept on one listening socket (as uvicorn's
    `--workers`: the kernel hands each new connection to one of them) and every command goes to
    all of them, their answers merged: `stats` and `mark` summed, `health` and `marks` joined;
    `floor` probes run from the first worker.
    """

    def __init__(self, options: AppOptions) -> None:
        if options.workers < 1:
            raise ValueError(f"workers must be ≥ 1, not {options.workers}")
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=2048)
        self._workers = [
            ChildProcess(child_main, (options, self._sock), f"bench-app-{n}") for n in range(options.workers)
        ]
        self.ws_url = f"ws://127.0.0.1:{self._sock.getsockname()[1]}/ws"

    @property
    def pid(self) -> int | None:
        return self._workers[0].process.pid

    async def __aenter__(self) -> AppProcess:
        try:
            for worker in self._workers:
                await worker.start()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        with anyio.CancelScope(shield=True):
            for worker in self._workers:
                if worker.process.pid is not None:
                    await worker.stop()
            self._sock.close()

    async def command(self, name: str, *args: Any, timeout_s: float = 120.0) -> Any:
        if name == "floor" or len(self._workers) == 1:
            return await self._workers[0].command(name, *args, timeout_s=timeout_s)
        replies: list[Any] = [None] * len(self._workers)

        async def ask(i: int) -> None:
            replies[i] = await self._workers[i].command(name, *args, timeout_s=timeout_s)

        async with anyio.create_task_group() as tg:
            for i in range(len(self._workers)):
                tg.start_soon(ask, i)
        return _merge(name, replies)

    async def stats(self) -> AppStats:
        stats: AppStats = await self.command("stats")
        return stats


_SUMMED = ("cpu_s", "loop_cpu_s", "rss_kb", "peak_rss_kb", "live_calls", "spans_exported", "export_cpu_s")


def _merge(command: str, replies: Sequence[Any]) -> Any:
    if command in ("stats", "mark"):
        first: AppStats = replies[0]
        return replace(
            first,
            **{name: sum(getattr(r, name) for r in replies) for name in _SUMMED},
            peak_resettable=all(r.peak_resettable for r in replies),
        )
    if command == "health":
        return LoopHealth(
            tuple(x for r in replies for x in r.lag_s), tuple(x for r in replies for x in r.gc_pauses)
        )
    if command == "marks":
        return {k: v for r in replies for k, v in r.items()}
    if command == "collect":
        return sum(found for found, _ in replies), max(pause for _, pause in replies)
    return replies[0]
