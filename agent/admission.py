"""Which calls this process takes: a per-process cap on concurrent calls, and the drain a SIGTERM
starts (no new calls; the live ones go on until they end).

One `Admission` per app. Every call (a websocket on Line's `/ws`) holds a slot from before it is
accepted until its endpoint returns, which is after the call's control plane has drained, so
`active` counts exactly the calls still using this process. `agent.gate` consults it before any
call work; `agent.drain` waits on it; `telemetry.call_metrics` reports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import anyio

Refusal = Literal["draining", "at capacity"]


class Admission:
    def __init__(self, max_calls: int | None) -> None:
        if max_calls is not None and max_calls < 1:
            raise ValueError(f"max_calls must be at least 1 (None: no cap), got {max_calls}")
        self.max_calls = max_calls
        self.active = 0
        self.draining = False
        self._changed: anyio.Event | None = None  # set when `active` drops, for `wait_idle`

    def refusal(self) -> Refusal | None:
        """Why a new call would be refused now, or None: it would be taken."""
        if self.draining:
            return "draining"
        if self.max_calls is not None and self.active >= self.max_calls:
            return "at capacity"
        return None

    @contextmanager
    def call(self) -> Iterator[None]:
        """Hold one call slot for the block (check `refusal()` first: this does not refuse)."""
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            if self._changed is not None:
                self._changed.set()

    def begin_drain(self) -> None:
        """From now on every new call is refused; live calls are untouched. Safe in a signal
        handler: it only sets a flag."""
        self.draining = True

    async def wait_idle(self) -> None:
        """Return once no call is open."""
        while self.active:
            self._changed = anyio.Event()
            await self._changed.wait()
        self._changed = None
