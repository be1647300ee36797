"""What one simulated call did, measured: when each action fired against the speech that
announced it (early = speech cut off; late = dead air), and a readable timeline. (bench/results.py
is not a twin: it holds a whole benchmark run's distributions, from per-call samples that the load
sections keep lighter than a `CallResult`.)"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.action_timing import ActionTiming, action_of, measure_action
from lab.media_buffer import MediaEvent
from lab.timeline import Timeline
from lab.voxengine_emulator import Effect, HangUp, RecordedRequest

if TYPE_CHECKING:
    from lab.call_lab import ActionRecord, CallLab


@dataclass(frozen=True)
class CallResult:
    scenario: str
    policy: str
    timeline: Timeline
    requests: tuple[RecordedRequest, ...]
    effects: tuple[Effect, ...]
    actions: tuple[ActionRecord, ...]
    phone: tuple[tuple[float, str], ...] = ()  # the emulated transfer legs: (time, what happened)
    hang_ups: tuple[HangUp, ...] = ()  # the emulated scenario hung up the caller's leg
    media: tuple[MediaEvent, ...] = ()  # the agent's audio at VoxEngine, as the scenario saw it

    @classmethod
    def collect(
        cls, scenario: str, policy: str, timeline: Timeline, lab: CallLab, session: str = "s1"
    ) -> CallResult:
        return cls(
            scenario,
            policy,
            timeline,
            tuple(lab.emulator.requests),
            tuple(lab.emulator.effects),
            tuple(lab.recorder.actions),
            tuple(entry for play in lab.emulator.transfers for entry in play.log),
            tuple(h for h in lab.emulator.hang_ups if h.session == session),
            tuple(
                lab.emulator.media(session).events(until=timeline.events[-1].at if timeline.events else 0.0)
            ),
        )

    def timing(self, action: str) -> ActionTiming:
        released = next((r.at for r in self.actions if r.action == action and r.name == "released"), None)
        asked = None
        if not any(t.name == action for t in self.timeline.tool_calls()):
            # Held by the call itself (a silence or time limit, agent/call_limits.py), not by a
            # tool the caller's turn led to: its goodbye is the first turn after it was held.
            asked = next((r.at for r in self.actions if r.action == action and r.name == "enqueued"), None)
        return measure_action(self.timeline, self.requests, action, asked_at=asked, released_at=released)

    def speech_end_before(self, at: float | None) -> bool:
        """Whether every agent turn had stopped speaking before `at` (nothing fired mid-speech)."""
        if at is None:
            return False
        return all(
            t.stopped_at is not None and (t.started_at > at or t.stopped_at <= at)
            for t in self.timeline.turns()
        )

    def render(self) -> str:
        """The call's timeline in milliseconds from its start."""
        origin = self.timeline.events[0].at if self.timeline.events else 0.0
        rows: list[tuple[float, str]] = []

        def ms(t: float) -> str:
            return f"{(t - origin) * 1000:8.0f} ms"

        closed_by = {e.detail["turn"]: e.detail["by"] for e in self.timeline.of_kind("agent_turn_closed")}
        for turn in self.timeline.turns():
            end = turn.stopped_at if turn.stopped_at is not None else turn.started_at
            cut = " (interrupted)" if turn.interrupted else ""
            rows.append((turn.started_at, f"agent speaks   turn {turn.index}: {_short(turn.text)!r}{cut}"))
            rows.append((end, f"speech ends    turn {turn.index} ({(end - turn.started_at) * 1000:.0f} ms)"))
            if turn.ended_at is not None:
                why = f" (closed by {closed_by[turn.index]})" if turn.index in closed_by else ""
                rows.append((turn.ended_at, f"harness idle   turn {turn.index}{why}"))
        for event in self.timeline.of_kind("user_turn_started"):
            rows.append((event.at, f"caller says    {event.detail.get('text', '')!r}"))
        for tool in self.timeline.tool_calls():
            if tool.result is None:
                rows.append((tool.at, f"tool call      {tool.name}({json.dumps(dict(tool.arguments))})"))
        for record in self.actions:
            if record.name in (
                "enqueued",
                "released",
                "retry",
                "delivered",
                "failed",
                "cancelled",
                "session_ended",
                "telephony.ringing",
                "telephony.connected",
                "telephony.failed",
                "telephony.completed",
                "own_side_ended",
            ):
                detail = ", ".join(f"{k}={v}" for k, v in record.attrs.items() if k != "kind")
                rows.append(
                    (
                        record.at,
                        f"action         {record.action} {record.name}" + (f" ({detail})" if detail else ""),
                    )
                )
        for request in self.requests:
            answer = (
                request.fault.kind if request.fault else f"{request.status} {json.dumps(request.response)}"
            )
            rows.append(
                (
                    request.time,
                    f"VoxEngine      POST {action_of(request)} attempt {request.attempt} -> {answer}",
                )
            )
        for at, what in self.phone:
            rows.append((at, f"phone          {what}"))
        for media in self.media:
            rows.append(
                (media.at, f"VoxEngine      agent audio {media.kind} (WebSocketMedia{media.kind.title()})")
            )
        for hang_up in self.hang_ups:
            offset = "unknown" if hang_up.playout_offset_ms is None else f"{hang_up.playout_offset_ms} ms"
            rows.append(
                (hang_up.time, f"VoxEngine      caller hung up ({hang_up.why}; playout offset {offset})")
            )
        closed = self.timeline.first("socket_closed")
        if closed:
            rows.append((closed.at, f"socket closed  by {closed.detail.get('by')}"))
        lines = [f"{ms(at)}  {text}" for at, text in sorted(rows, key=lambda r: r[0])]
        for action in sorted({action_of(r) for r in self.requests} | _requested(self)):
            timing = self.timing(action)
            lines.append(f"  {action}: {_verdict(timing)}")
        return "\n".join(lines)


def _requested(result: CallResult) -> set[str]:
    by_tools = {t.name for t in result.timeline.tool_calls() if t.name in ("end_call", "call_transfer")}
    return by_tools | {r.action for r in result.actions if r.name == "enqueued"}


def _verdict(timing: ActionTiming) -> str:
    if not timing.delivered:
        return f"NEVER DELIVERED ({timing.posts} POSTs)"
    offset = timing.offset_s
    assert offset is not None
    if timing.early:
        return f"fired {-offset * 1000:.0f} ms BEFORE the confirming speech ended (caller cut off)"
    return f"accepted {offset * 1000:.0f} ms after the confirming speech ended ({timing.posts} POSTs)"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
