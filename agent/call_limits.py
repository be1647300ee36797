"""Silence and time limits of one call, through the same control plane as the end_call tool.

- `silence_prompt_s` (VOX_SILENCE_PROMPT_S): that long with neither party speaking, the agent
  asks whether the caller is still there (once per silence);
- `silence_hangup_s` (VOX_SILENCE_HANGUP_S, longer): that long, the agent says a short goodbye
  and holds an `end_call`, released when the goodbye's turn ends, like the tool's (never cut);
- `max_call_s` (VOX_MAX_CALL_S): `close_margin_s` before it, the agent closes politely the same
  way (when nobody is speaking, or at the latest half the margin later). The scenario's
  ApplicationStorage `MAX_CALL_S` is the hard backstop, set a little above it.

Silence is measured from the end of the last speech of either party (a turn's start or end, a
key the caller pressed); the check-in itself does not restart it, so the goodbye comes
`silence_hangup_s` after the caller last spoke. While a transfer is under way (the caller hears
it ringing) silence is not counted; it restarts when the transfer ended. Once a hang-up is held
(by a limit or by the agent), nothing more fires.

`CallLimits.observe` sees every harness event (the app's run filter, as the control plane does);
`run` is a task in the call's scope that fires each limit by injecting a turn into Line's
receive loop (`agent/local_input.py`); `turn` is what the agent says for it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import anyio
from line.events import (
    AgentEndCall,
    AgentSendText,
    AgentTurnEnded,
    AgentTurnStarted,
    InputEvent,
    OutputEvent,
    UserDtmfSent,
    UserTurnEnded,
    UserTurnStarted,
)
from loguru import logger

from agent import prompt
from agent.actions import CALL_TRANSFER, END_CALL

if TYPE_CHECKING:  # settings import this module; the control plane is needed only per call
    from agent.call_control import CallControl

LimitKind = Literal["silence_prompt", "silence_hangup", "max_call"]
KINDS: tuple[LimitKind, ...] = ("silence_prompt", "silence_hangup", "max_call")


@dataclass(frozen=True)
class LimitTimings:
    """Seconds; None: that limit is off."""

    silence_prompt_s: float | None = None
    silence_hangup_s: float | None = None
    max_call_s: float | None = None
    close_margin_s: float = 20.0  # the polite close starts this long before max_call_s

    @property
    def on(self) -> bool:
        return any(v is not None for v in (self.silence_prompt_s, self.silence_hangup_s, self.max_call_s))


class CallLimits:
    """The limits of one call: observes its turns, fires through `trigger(kind)`."""

    def __init__(
        self,
        timings: LimitTimings,
        control: CallControl,
        trigger: Callable[[str], None],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.timings = timings
        self._control = control
        self._trigger = trigger
        self._clock = clock
        self._started = clock()
        self._quiet_since = self._started
        self._agent_speaking = self._user_speaking = False
        self._prompted = False  # the check-in of this silence was said (or is being said)
        self._in_check_in = False  # its turn does not count as speech
        self._paused = False  # a transfer under way
        self._closing = False
        self._changed = anyio.Event()
        self.fired: list[tuple[LimitKind, float]] = []

    # ---- from the run filter (synchronous, never raises) ----

    def observe(self, event: InputEvent) -> None:
        now = self._clock()
        if isinstance(event, (UserTurnStarted, UserTurnEnded, UserDtmfSent)):
            self._user_speaking = isinstance(event, UserTurnStarted)
            self._prompted = self._in_check_in = False
            self._quiet_since = now
        elif isinstance(event, (AgentTurnStarted, AgentTurnEnded)):
            self._agent_speaking = isinstance(event, AgentTurnStarted)
            if not self._in_check_in:
                self._quiet_since = now
            elif isinstance(event, AgentTurnEnded):
                self._in_check_in = False
        else:
            return
        self._wake()

    # ---- the call-scoped task ----

    async def run(self) -> None:
        """Fire each limit when it is due, until one closes the call (cancelled with the call)."""
        if not self.timings.on:
            return
        while not self._closing:
            now = self._clock()
            kind, at = self._next(now)
            if kind is not None and at <= now:
                self._fire(kind, now)
                continue
            changed = self._changed
            with anyio.move_on_after(None if at == float("inf") else max(0.0, at - now)):
                await changed.wait()

    # ---- the turn the agent says for a fired limit ----

    async def turn(self, kind: str) -> AsyncIterator[OutputEvent]:
        """The check-in, or a goodbye with the hang-up held until its turn ends."""
        if kind == "silence_prompt":
            yield AgentSendText(text=prompt.SILENCE_CHECK_IN)
            return
        goodbye = prompt.SILENCE_GOODBYE if kind == "silence_hangup" else prompt.TIME_LIMIT_GOODBYE
        result = self._control.request(END_CALL)  # held before the goodbye is spoken, as the tool does
        if result.status == "duplicate":
            return  # a hang-up is already on its way, with its own goodbye
        yield AgentSendText(text=goodbye)
        if result.status == "unavailable" and result.reason != "call_ended":
            # No control plane on this call: only Line's end_call can end it (the goodbye may be cut).
            logger.warning(f"call limit {kind}: no control URL; ending the call through Line")
            yield AgentEndCall()

    # ---- internals ----

    def _next(self, now: float) -> tuple[LimitKind | None, float]:
        """The next limit to fire and when (inf: none until something changes)."""
        t = self.timings
        if self._control.in_flight(END_CALL):
            self._closing = True  # the agent hangs up by itself: nothing more to fire
            return None, float("inf")
        candidates: list[tuple[float, LimitKind]] = []
        speaking = self._agent_speaking or self._user_speaking
        if t.max_call_s is not None:
            close_at = self._started + t.max_call_s - t.close_margin_s
            # Nobody is cut mid-sentence unless the close would come too late.
            latest = close_at + t.close_margin_s / 2
            candidates.append((close_at if not speaking or now >= latest else latest, "max_call"))
        transfer = self._control.in_flight(CALL_TRANSFER)
        if transfer != self._paused:
            self._paused = transfer
            self._quiet_since = now  # silence counts again from the transfer's end
        if not self._paused and not speaking:
            if t.silence_hangup_s is not None:
                candidates.append((self._quiet_since + t.silence_hangup_s, "silence_hangup"))
            if t.silence_prompt_s is not None and not self._prompted:
                candidates.append((self._quiet_since + t.silence_prompt_s, "silence_prompt"))
        if not candidates:
            return None, float("inf")
        at, kind = min(candidates)
        return kind, at

    def _fire(self, kind: LimitKind, now: float) -> None:
        self.fired.append((kind, now))
        if kind == "silence_prompt":
            self._prompted = self._in_check_in = True
            logger.info(f"call limit: {now - self._quiet_since:.1f} s of silence; checking in")
        else:
            self._closing = True
            what = f"{now - self._quiet_since:.1f} s of silence" if kind == "silence_hangup" else "time limit"
            logger.info(f"call limit: {what}; saying goodbye and hanging up")
        self._trigger(kind)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
