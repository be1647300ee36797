"""Building and serving the app the way production runs it."""

from __future__ import annotations

import os
from types import FrameType

import uvicorn

from agent.app import TelephonyAgentApp
from agent.settings import Settings


def create_app(settings: Settings | None = None) -> TelephonyAgentApp:
    """The production app: settings from the environment, tracing per the OTEL_* variables."""
    from telemetry import shutdown_tracing, tracing_observer_factory

    app = TelephonyAgentApp(settings or Settings.from_env())
    tracing = tracing_observer_factory()
    if tracing is not None:
        app.add_observer(tracing)
        app.add_http_client_hook(tracing.instrument_http_client)
        app.add_shutdown_hook(shutdown_tracing)
    return app


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # First SIGTERM/SIGINT: drain (calls release and deliver what they hold). A second one
        # means "now": stop waiting for calls and exit.
        if self.should_exit:
            self.force_exit = True
        super().handle_exit(sig, frame)


def serve(app: TelephonyAgentApp, host: str | None = None, port: int | None = None) -> None:
    """Run under uvicorn; on SIGTERM calls are closed, release their actions and drain first."""
    config = uvicorn.Config(
        app.fastapi_app,
        host=host or os.getenv("HOST") or "0.0.0.0",
        port=port or int(os.getenv("PORT", "8000")),
        # Long enough for every call's bounded drain, then uvicorn cancels what is left.
        timeout_graceful_shutdown=int(app.settings.drain_timeout_s) + 3,
    )
    _Server(config).run()
