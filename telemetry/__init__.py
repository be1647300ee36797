"""Tracing for the agent (OpenTelemetry). Filled in by the tracing work; off by default."""

from __future__ import annotations

from collections.abc import Callable

from agent.call_observer import CallInfo, CallObserver


def tracing_observer_factory() -> Callable[[CallInfo], CallObserver] | None:
    """A per-call observer that records spans, or None when tracing is not configured."""
    return None
