"""What one simulated call did, measured: when each action fired against the speech that
announced it (early = speech cut off; late = dead air), and a readable timeline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.timeline import Timeline, Turn
from lab.voxengine_emulator import Effect, RecordedRequest

if TYPE_CHECKING:
    from lab.call_lab import ActionRecord, CallLab


@dataclass(frozen=True)
class ActionTiming:
    """One action of a call, against the speech that confirmed it."""

    action: str
    requested_at: float | None  # the tool call, as the harness saw it
    speech_end: float | None  # when the confirming speech stopped (or the socket closed)
    first_post_at: float | None
    accepted_at: float | None
    attempts: int

    @property
    def delivered(self) -> bool:
        return self.accepted_at is not None

    @property
    def offset_s(self) -> float | None:
        """Accepted POST's arrival minus the end of the confirming speech."""
        if self.accepted_at is None or self.speech_end is None:
            return None
        return self.accepted_at - self.speech_end

    @property
    def early(self) -> bool:
        """Fired while the confirmation was still playing: the caller was cut off."""
        return (
            self.first_post_at is not None
            and self.speech_end is not None
            and self.first_post_at < self.speech_end
        )

    @property
    def dead_air_s(self) -> float | None:
        offset = self.offset_s
        return None if offset is None else max(0.0, offset)


@dataclass(frozen=True)
class CallResult:
    scenario: str
    policy: str
    timeline: Timeline
    requests: tuple[RecordedRequest, ...]
    effects: tuple[Effect, ...]
    actions: tuple[ActionRecord, ...]

    @classmethod
    def collect(cls, scenario: str, policy: str, timeline: Timeline, lab: CallLab) -> CallResult:
        return cls(
            scenario,
            policy,
            timeline,
            tuple(lab.emulator.requests),
            tuple(lab.emulator.effects),
            tuple(lab.recorder.actions),
        )

    def timing(self, action: str) -> ActionTiming:
        tool = next((t for t in self.timeline.tool_calls() if t.name == action), None)
        requests = [r for r in self.requests if _action_of(r) == action]
        accepted = next(
            (r for r in requests if r.response is not None and r.response.get("ok") is True), None
        )
        return ActionTiming(
            action=action,
            requested_at=tool.at if tool else None,
            speech_end=self._speech_end(tool.at) if tool else None,
            first_post_at=requests[0].time if requests else None,
            accepted_at=accepted.time if accepted else None,
            attempts=len(requests),
        )

    def confirming_turn(self, requested_at: float) -> Turn | None:
        """The agent turn that played the speech confirming a tool call reported at `requested_at`:
        the turn of the last agent text received since the caller last spoke, up to the tool call.

        Line reports a tool call when the tool returns, which for a tool that sleeps (the published
        policy) is long after its confirmation was sent, so the text, not the report, anchors it.
        """
        spoke = [e.at for e in self.timeline.of_kind("user_turn_started") if e.at <= requested_at]
        since = spoke[-1] if spoke else float("-inf")
        texts = [e for e in self.timeline.of_kind("agent_text_received", since=since) if e.at <= requested_at]
        if not texts:
            return None  # nothing was said for this action
        index = texts[-1].detail.get("turn")
        return next((t for t in self.timeline.turns() if t.index == index), None)

    def _speech_end(self, requested_at: float) -> float | None:
        turn = self.confirming_turn(requested_at)
        closed = self.timeline.first("socket_closed")
        candidates = [t for t in (turn.stopped_at if turn else None, closed.at if closed else None) if t]
        return min(candidates) if candidates else requested_at

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

        for turn in self.timeline.turns():
            end = turn.stopped_at if turn.stopped_at is not None else turn.started_at
            cut = " (interrupted)" if turn.interrupted else ""
            rows.append((turn.started_at, f"agent speaks   turn {turn.index}: {_short(turn.text)!r}{cut}"))
            rows.append((end, f"speech ends    turn {turn.index} ({(end - turn.started_at) * 1000:.0f} ms)"))
        for event in self.timeline.of_kind("user_turn_started"):
            rows.append((event.at, f"caller says    {event.detail.get('text', '')!r}"))
        for tool in self.timeline.tool_calls():
            if tool.result is None:
                rows.append((tool.at, f"tool call      {tool.name}({json.dumps(dict(tool.arguments))})"))
        for record in self.actions:
            if record.name in ("enqueued", "released", "retry", "accepted", "failed", "cancelled"):
                detail = ", ".join(f"{k}={v}" for k, v in record.attrs.items() if k != "action")
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
                    f"VoxEngine      POST {_action_of(request)} attempt {request.attempt} -> {answer}",
                )
            )
        closed = self.timeline.first("socket_closed")
        if closed:
            rows.append((closed.at, f"socket closed  by {closed.detail.get('by')}"))
        lines = [f"{ms(at)}  {text}" for at, text in sorted(rows, key=lambda r: r[0])]
        for action in sorted({_action_of(r) for r in self.requests} | _requested(self)):
            timing = self.timing(action)
            lines.append(f"  {action}: {_verdict(timing)}")
        return "\n".join(lines)


def _requested(result: CallResult) -> set[str]:
    return {t.name for t in result.timeline.tool_calls() if t.name in ("end_call", "call_transfer")}


def _verdict(timing: ActionTiming) -> str:
    if not timing.delivered:
        return f"NEVER DELIVERED ({timing.attempts} POSTs)"
    offset = timing.offset_s
    assert offset is not None
    if timing.early:
        return f"fired {-offset * 1000:.0f} ms BEFORE the confirming speech ended (caller cut off)"
    return f"accepted {offset * 1000:.0f} ms after the confirming speech ended ({timing.attempts} POSTs)"


def _action_of(request: RecordedRequest) -> str:
    try:
        body = json.loads(request.body)
    except ValueError:
        return "?"
    return str(body.get("action", "?")) if isinstance(body, dict) else "?"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
