"""The one judgement of when an action fired against the speech that confirmed it: cut off
(early), lost (never accepted), or how much dead air the caller heard. The timing suite, the
replay of recorded calls and the benchmark all measure with `measure_action`.

The confirming turn is the first agent turn that started after the caller's request (`asked_at`;
by default the last caller turn that began before the tool call, or before the first POST). Its
speech ends when the caller stopped hearing it: its audio ended, the caller talked over it, or
the socket closed, whichever came first. That is the caller's moment, not the harness's idle,
which may come later (the faithful harness waits for `response_end` to close a turn).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from lab.timeline import Timeline, Turn
from lab.voxengine_emulator import RecordedRequest

__all__ = ["ActionTiming", "action_of", "confirming_turn", "measure_action"]


@dataclass(frozen=True)
class ActionTiming:
    """One action of a call, against the speech that confirmed it."""

    action: str
    requested_at: float | None  # the tool call, as the harness saw it
    turn: Turn | None  # the confirming turn (None: nothing was said for the action)
    speech_end: float | None  # the caller stopped hearing the confirmation
    first_post_at: float | None
    accepted_at: float | None
    posts: int
    released_at: float | None = None  # when the app released the action (ours only)

    @property
    def delivered(self) -> bool:
        return self.accepted_at is not None

    @property
    def early(self) -> bool:
        """A POST arrived while the confirmation was still playing: the caller was cut off."""
        return (
            self.first_post_at is not None
            and self.speech_end is not None
            and self.first_post_at < self.speech_end
        )

    @property
    def offset_s(self) -> float | None:
        """(Accepted, else first) POST arrival minus the end of the confirming speech."""
        at = self.accepted_at if self.accepted_at is not None else self.first_post_at
        if at is None or self.speech_end is None:
            return None
        return at - self.speech_end

    @property
    def dead_air_s(self) -> float | None:
        """Silence between the end of the confirmation and the action, when neither lost nor early."""
        offset = self.offset_s
        if not self.delivered or self.early or offset is None:
            return None
        return max(0.0, offset)

    @property
    def speech_s(self) -> float | None:
        """How long the confirmation played, as it happened."""
        if self.turn is None or self.speech_end is None:
            return None
        return self.speech_end - self.turn.started_at

    @property
    def release_lag_s(self) -> float | None:
        """End of the confirming speech → the app released the action."""
        if self.released_at is None or self.speech_end is None:
            return None
        return self.released_at - self.speech_end


def action_of(request: RecordedRequest) -> str:
    """The `action` of a recorded control request ("?" when its body says none)."""
    try:
        body = json.loads(request.body)
    except ValueError:
        return "?"
    return str(body.get("action", "?")) if isinstance(body, dict) else "?"


def confirming_turn(timeline: Timeline, asked_at: float) -> Turn | None:
    """The first agent turn that started after the caller's request at `asked_at`."""
    return next((t for t in timeline.turns() if t.started_at >= asked_at), None)


def measure_action(
    timeline: Timeline,
    requests: Sequence[RecordedRequest],
    action: str,
    *,
    asked_at: float | None = None,
    released_at: float | None = None,
) -> ActionTiming:
    """`action` of the call on `timeline`, whose control requests (of this call) are `requests`."""
    tool = next((t for t in timeline.tool_calls() if t.name == action and t.result is None), None)
    posts = [r for r in requests if action_of(r) == action]
    accepted = next((r for r in posts if r.response is not None and r.response.get("ok") is True), None)
    first_post = posts[0].time if posts else None
    if asked_at is None:
        until = tool.at if tool is not None else first_post
        spoke = [e.at for e in timeline.of_kind("user_turn_started") if until is None or e.at <= until]
        asked_at = spoke[-1] if spoke else None
    turn = confirming_turn(timeline, asked_at) if asked_at is not None else None
    closed = timeline.first("socket_closed")
    ends = [at for at in (turn.stopped_at if turn else None, closed.at if closed else None) if at is not None]
    fallback = tool.at if tool is not None else None  # nothing was said for this action
    return ActionTiming(
        action=action,
        requested_at=tool.at if tool is not None else None,
        turn=turn,
        speech_end=min(ends) if turn is not None and ends else fallback,
        first_post_at=first_post,
        accepted_at=accepted.time if accepted else None,
        posts=len(posts),
        released_at=released_at,
    )
