"""Building and serving the app the way production runs it."""

from __future__ import annotations

import os
import signal
import sys
from socket import socket
from types import FrameType

import uvicorn
from uvicorn.supervisors import Multiprocess

from agent import runtime
from agent.app import TelephonyAgentApp
from agent.settings import Settings, SettingsError


def create_app(settings: Settings | None = None) -> TelephonyAgentApp:
    """The production app: settings from the environment, tracing and the active-calls metric per
    the OTEL_* variables, the server GC policy (`agent.runtime`) applied when its lifespan starts."""
    from telemetry import shutdown_tracing, tracing_observer_factory
    from telemetry.call_metrics import call_metrics_from_env

    app = TelephonyAgentApp(settings or Settings.from_env(), gc_policy=runtime.SERVER_GC)
    tracing = tracing_observer_factory()
    if tracing is not None:
        app.add_observer(tracing)
        app.add_shutdown_hook(shutdown_tracing)
    metrics = call_metrics_from_env(app.admission)
    if metrics is not None:
        app.add_shutdown_hook(metrics.shutdown)  # a last export: the count after the drain
    return app


def create_app_or_exit() -> TelephonyAgentApp:
    """`create_app()`, or one line naming the misconfigured variable and exit status 2, at once
    (`python main.py` and `uvicorn main:app` alike: both import main.py first)."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"vox-line-agent: configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    return create_app(settings)


class _Supervisor(Multiprocess):
    """Uvicorn's worker supervisor, but a second SIGTERM/SIGINT reaches the workers.

    On the first, uvicorn's supervisor sends each worker one SIGTERM (each drains: `agent.drain`)
    and waits for them; signals after that are queued and never handled. Here they are forwarded:
    a worker that gets a second signal exits at once, as `python main.py` with one process does.
    """

    def __init__(self, config: uvicorn.Config, sockets: list[socket]) -> None:
        super().__init__(config, sockets)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit.is_set():
            self.signal_queue.append(sig)  # the supervisor's own handling: stop the workers
            return
        for process in self.processes:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, sig)


def serve(app: TelephonyAgentApp, *, import_string: str = "main:app") -> None:
    """Run under uvicorn on `HOST`:`PORT` with the runtime `agent.runtime` chooses. The first
    SIGTERM drains (`agent.drain`: no new calls, live ones end on their own, at most
    `AGENT_DRAIN_TIMEOUT_S`; then the rest are closed and release their actions); a second one
    exits at once.

    With `WEB_CONCURRENCY` > 1, uvicorn's supervisor runs that many worker processes that each
    import `import_string` (`app` is then only the configuration check) and accept on one socket,
    as `uvicorn --workers` does. The supervisor passes SIGTERM on to every worker, and each drains
    as one process does (the app's lifespan installs the drain in each); a second SIGTERM to the
    supervisor is forwarded too, and the workers exit at once.
    """
    settings = app.settings
    config = uvicorn.Config(
        import_string if settings.workers > 1 else app.fastapi_app,
        host=settings.host,
        port=settings.port,
        loop=runtime.event_loop(),
        http=runtime.HTTP_PARSER,
        workers=settings.workers,
        # After the call drain: long enough for every closed call's bounded flush, then uvicorn
        # cancels what is left.
        timeout_graceful_shutdown=int(settings.drain_timeout_s) + 3,
    )
    if settings.workers == 1:
        uvicorn.Server(config).run()
    else:
        _Supervisor(config, sockets=[config.bind_socket()]).run()
