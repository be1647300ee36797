"""Hooks on one call's timeline, for tracing and for the lab's recorder.

The control plane reports what happens (harness events, agent outputs, each step of each
action) to a `CallObserver`. Observers must be quick and must not raise; `ObserverGroup` fans
out to several and contains any exception so a faulty observer never touches the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from line.events import InputEvent, OutputEvent
from loguru import logger

from agent.action_events import ActionEvent
from agent.actions import ControlAction


@dataclass(frozen=True)
class CallInfo:
    """What is known about a call when it starts. No secrets: the control URL is redacted."""

    call_id: str
    agent_call_id: str
    caller: str
    callee: str
    control_host: str | None
    control_fingerprint: str | None
    control_refusal: str | None
    control_origin: str | None = None  # scheme://host:port, never the path


class CallObserver:
    """No-op base: override what you need."""

    def call_started(self, call: CallInfo, at: float) -> None:
        pass

    def harness_event(self, event: InputEvent, at: float) -> None:
        pass

    def agent_output(self, event: OutputEvent, at: float) -> None:
        pass

    def action_event(self, action: ControlAction, event: ActionEvent, at: float) -> None:
        """A step of the action's life (agent/action_events.py)."""

    @contextlib.contextmanager
    def delivering(self, action: ControlAction) -> Iterator[None]:
        """Context around an action's POSTs (a tracer makes its span current here)."""
        yield

    def call_ended(self, at: float) -> None:
        pass


_HOOKS = ("call_started", "harness_event", "agent_output", "action_event", "delivering", "call_ended")


class ObserverGroup(CallObserver):
    """Fans each hook out to the observers that implement it (harness events come per spoken
    word, so observers that keep the base class's no-op are skipped, not called)."""

    def __init__(self, observers: Sequence[CallObserver]) -> None:
        self._observers = tuple(observers)
        self._hooks: dict[str, tuple[tuple[str, Any], ...]] = {
            hook: tuple(
                (type(o).__name__, getattr(o, hook))
                for o in self._observers
                if getattr(type(o), hook) is not getattr(CallObserver, hook)
            )
            for hook in _HOOKS
        }

    def _each(self, hook: str, *args: Any) -> None:
        for name, method in self._hooks[hook]:
            try:
                method(*args)
            except Exception:
                logger.exception(f"call observer {name}.{hook} failed")

    def call_started(self, call: CallInfo, at: float) -> None:
        self._each("call_started", call, at)

    def harness_event(self, event: InputEvent, at: float) -> None:
        self._each("harness_event", event, at)

    def agent_output(self, event: OutputEvent, at: float) -> None:
        self._each("agent_output", event, at)

    def action_event(self, action: ControlAction, event: ActionEvent, at: float) -> None:
        self._each("action_event", action, event, at)

    @contextlib.contextmanager
    def delivering(self, action: ControlAction) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for name, method in self._hooks["delivering"]:
                try:
                    stack.enter_context(method(action))
                except Exception:
                    logger.exception(f"call observer {name}.delivering failed")
            yield

    def call_ended(self, at: float) -> None:
        self._each("call_ended", at)
