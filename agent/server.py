"""Building and serving the app the way production runs it."""

from __future__ import annotations

import sys
from types import FrameType

import uvicorn
from uvicorn.supervisors import Multiprocess

from agent import runtime
from agent.app import TelephonyAgentApp
from agent.settings import Settings, SettingsError


def create_app(settings: Settings | None = None) -> TelephonyAgentApp:
    """The production app: settings from the environment, tracing per the OTEL_* variables, the
    server GC policy (`agent.runtime`) applied when its lifespan starts."""
    from telemetry import shutdown_tracing, tracing_observer_factory

    app = TelephonyAgentApp(settings or Settings.from_env(), gc_policy=runtime.SERVER_GC)
    tracing = tracing_observer_factory()
    if tracing is not None:
        app.add_observer(tracing)
        app.add_shutdown_hook(shutdown_tracing)
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


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # First SIGTERM/SIGINT: drain (calls release and deliver what they hold). A second one
        # means "now": stop waiting for calls and exit.
        if self.should_exit:
            self.force_exit = True
        super().handle_exit(sig, frame)


def serve(app: TelephonyAgentApp, *, import_string: str = "main:app") -> None:
    """Run under uvicorn on `HOST`:`PORT` with the runtime `agent.runtime` chooses; on SIGTERM
    calls are closed, release their actions and drain first.

    With `WEB_CONCURRENCY` > 1, uvicorn's supervisor runs that many worker processes that each
    import `import_string` (`app` is then only the configuration check) and accept on one socket,
    as `uvicorn --workers` does; each drains on SIGTERM, and a second SIGTERM does not cut that
    short.
    """
    settings = app.settings
    config = uvicorn.Config(
        import_string if settings.workers > 1 else app.fastapi_app,
        host=settings.host,
        port=settings.port,
        loop=runtime.event_loop(),
        http=runtime.HTTP_PARSER,
        workers=settings.workers,
        # Long enough for every call's bounded drain, then uvicorn cancels what is left.
        timeout_graceful_shutdown=int(settings.drain_timeout_s) + 3,
    )
    if settings.workers == 1:
        _Server(config).run()
    else:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
