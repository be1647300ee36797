"""One clock, one record: what happened during a simulated call, and when.

Every timestamp is ``time.perf_counter()`` (see :func:`now`), the clock the VoxEngine emulator
uses for POST arrivals, so events from the harness simulator and the emulator can be compared
(or recorded into one shared :class:`Timeline`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

__all__ = ["Timeline", "TimelineEvent", "ToolCall", "Turn", "now"]


def now() -> float:
    """The lab's one clock."""
    return time.perf_counter()


@dataclass(frozen=True)
class TimelineEvent:
    at: float
    kind: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class Turn:
    """One agent turn as played by the simulated TTS.

    ``ended_at`` is when ``agent_state: idle`` was sent (the app's AgentTurnEnded moment), or
    None while the turn is still open. ``stopped_at`` is when the caller stopped hearing it: when
    its audio ended (which may be before its idle: the harness may still be waiting to close the
    turn), or the barge-in / hang-up moment for an interrupted turn (whose idle may come later).
    ``text`` is what was played (not what was acknowledged: acknowledgements may merge, drop or
    punctuate words).
    """

    index: int
    queued_at: float
    started_at: float
    ended_at: float | None
    stopped_at: float | None
    text: str
    interrupted: bool


@dataclass(frozen=True)
class ToolCall:
    at: float
    name: str
    arguments: Mapping[str, Any]
    result: str | None
    id: str | None


class Timeline:
    """An append-only list of events, with helpers to query it and to wait on it."""

    def __init__(self) -> None:
        self.events: list[TimelineEvent] = []
        self._waiters: list[anyio.Event] = []
        self._listeners: list[Callable[[TimelineEvent], None]] = []

    def listen(self, listener: Callable[[TimelineEvent], None]) -> None:
        """Call `listener` with every event recorded from now on, as it is recorded."""
        self._listeners.append(listener)

    def record(self, kind: str, detail: Mapping[str, Any] | None = None) -> TimelineEvent:
        event = TimelineEvent(at=now(), kind=kind, detail=dict(detail or {}))
        self.events.append(event)
        for listener in self._listeners:
            listener(event)
        self.notify()
        return event

    def notify(self) -> None:
        """Wake every waiter so it re-checks its condition."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.set()

    # ---- queries ----

    def of_kind(self, kind: str, *, since: float | None = None) -> list[TimelineEvent]:
        return [e for e in self.events if e.kind == kind and (since is None or e.at >= since)]

    def first(
        self,
        kind: str,
        *,
        where: Callable[[TimelineEvent], bool] | None = None,
        since: float | None = None,
    ) -> TimelineEvent | None:
        for event in self.of_kind(kind, since=since):
            if where is None or where(event):
                return event
        return None

    def turns(self) -> list[Turn]:
        """Agent turns that started playing, in order of their start."""
        ended = {e.detail["turn"]: e for e in self.of_kind("agent_turn_ended")}
        stopped = {e.detail["turn"]: e for e in self.of_kind("agent_playback_stopped")}
        audio_end = {e.detail["turn"]: e.detail["audio_end"] for e in self.of_kind("agent_playback_ended")}
        words: dict[int, list[str]] = {}
        for e in self.of_kind("agent_word"):
            words.setdefault(e.detail["turn"], []).extend(e.detail["words"])
        turns: list[Turn] = []
        for start in self.of_kind("agent_turn_started"):
            index: int = start.detail["turn"]
            end = ended.get(index)
            stop = stopped.get(index)
            stopped_at = stop.at if stop is not None else audio_end.get(index)
            if stop is not None:
                text = stop.detail["spoken"]
            elif end is not None:
                text = end.detail["text"]
            else:
                text = " ".join(words.get(index, []))
            turns.append(
                Turn(
                    index=index,
                    queued_at=start.detail["queued_at"],
                    started_at=start.at,
                    ended_at=end.at if end is not None else None,
                    stopped_at=stopped_at,
                    text=text,
                    interrupted=stop is not None,
                )
            )
        return turns

    def tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(
                at=e.at,
                name=e.detail["name"],
                arguments=e.detail["arguments"],
                result=e.detail.get("result"),
                id=e.detail.get("id"),
            )
            for e in self.of_kind("tool_call")
        ]

    def describe(self, last: int = 30) -> str:
        """The last events, one a line, timed relative to the first event."""
        if not self.events:
            return "(empty timeline)"
        t0 = self.events[0].at
        return "\n".join(f"{e.at - t0:+9.3f}s {e.kind} {dict(e.detail)}" for e in self.events[-last:])

    # ---- waiting ----

    async def wait_until(
        self, predicate: Callable[[], bool], *, timeout_s: float | None, what: str = "condition"
    ) -> None:
        """Return once ``predicate()`` holds; it is re-checked after every record/notify."""
        try:
            with anyio.fail_after(timeout_s):
                while not predicate():
                    waiter = anyio.Event()
                    self._waiters.append(waiter)
                    await waiter.wait()
        except TimeoutError:
            raise TimeoutError(
                f"timed out after {timeout_s}s waiting for {what}\n{self.describe()}"
            ) from None

    async def wait_for(
        self,
        kind: str,
        *,
        where: Callable[[TimelineEvent], bool] | None = None,
        since: float | None = None,
        timeout_s: float,
    ) -> TimelineEvent:
        """The first event of ``kind`` (matching ``where``, at or after ``since``), once recorded."""
        found: list[TimelineEvent] = []

        def seen() -> bool:
            event = self.first(kind, where=where, since=since)
            if event is not None:
                found.append(event)
            return event is not None

        await self.wait_until(seen, timeout_s=timeout_s, what=f"a {kind!r} event")
        return found[-1]
