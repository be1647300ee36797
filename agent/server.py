"""Building and serving the app the way production runs it."""

from __future__ import annotations

import sys
from types import FrameType

import uvicorn

from agent.app import TelephonyAgentApp
from agent.settings import Settings, SettingsError


def create_app(settings: Settings | None = None) -> TelephonyAgentApp:
    """The production app: settings from the environment, tracing per the OTEL_* variables."""
    from telemetry import shutdown_tracing, tracing_observer_factory

    app = TelephonyAgentApp(settings or Settings.from_env())
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


def serve(app: TelephonyAgentApp) -> None:
    """Run under uvicorn on `HOST`:`PORT`; on SIGTERM calls are closed, release their actions
    and drain first."""
    config = uvicorn.Config(
        app.fastapi_app,
        host=app.settings.host,
        port=app.settings.port,
        # Long enough for every call's bounded drain, then uvicorn cancels what is left.
        timeout_graceful_shutdown=int(app.settings.drain_timeout_s) + 3,
    )
    _Server(config).run()
