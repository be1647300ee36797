"""Building and serving the app the way production runs it."""

from __future__ import annotations

import os

import uvicorn

from agent.app import TelephonyAgentApp
from agent.settings import Settings


def create_app(settings: Settings | None = None) -> TelephonyAgentApp:
    """The production app: settings from the environment, tracing per the OTEL_* variables."""
    from telemetry import tracing_observer_factory

    app = TelephonyAgentApp(settings or Settings.from_env())
    factory = tracing_observer_factory()
    if factory is not None:
        app.add_observer(factory)
    return app


def serve(app: TelephonyAgentApp, host: str | None = None, port: int | None = None) -> None:
    """Run under uvicorn; on SIGTERM calls are closed, release their actions and drain first."""
    uvicorn.run(
        app.fastapi_app,
        host=host or os.getenv("HOST") or "0.0.0.0",
        port=port or int(os.getenv("PORT", "8000")),
        # Long enough for every call's bounded drain, then uvicorn cancels what is left.
        timeout_graceful_shutdown=int(app.settings.drain_timeout_s) + 3,
    )
