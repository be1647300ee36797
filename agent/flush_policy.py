"""The flush policy: when a pending control action is released to VoxEngine.

A tool speaks its confirmation and then holds an action. The action is released when the agent
turn that carried the confirmation ends, as reported by the harness (`agent_state: idle`, i.e.
`AgentTurnEnded`), so a transfer never cuts the sentence off and a hang-up never leaves dead air.

Which turn carries the confirmation:
- every `UserTurnStarted` opens a new *epoch*; a confirmation is spoken in the epoch in which
  the tool ran, so turns of an earlier epoch (the introduction the caller talked over, whose
  idle may arrive late) never release it;
- the carrier is the turn of the action's epoch already speaking when the action was held, or
  else the next turn of that epoch to start.

Fallbacks, so no action waits forever:
- no carrier within `no_speech_s` of the hold (the tool and the reply spoke nothing, or the
  speech was dropped before it began) → released (`no_speech`);
- held longer than `max_hold_s` (a turn that never ends) → released (`max_hold`);
- `CallEnded` (the harness closed the socket) → everything released at once (`call_ended`).

A barge-in during the confirmation keeps the action by default: it is released when the
interrupted turn ends. Kinds with `barge_in="cancel"` are dropped instead (`barge_in`).

Known limit: the harness reports no turn ids, so when the turn of the action's epoch is already
speaking as the tool runs, and its idle crosses the confirmation text on the wire (the harness
finished the earlier words a moment before the confirmation reached it), that idle is taken as
the confirmation's end. The window is one network transit; the lab and the benchmarks never hit
it, since the reply's text and its tool call arrive within milliseconds of each other.

This module is pure and synchronous: events and the time come in, release decisions come out.
`agent/call_control.py` runs it against the live call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from line.events import AgentTurnEnded, AgentTurnStarted, CallEnded, InputEvent, UserTurnStarted

from agent.actions import BargeInPolicy

ReleaseReason = Literal["turn_ended", "no_speech", "max_hold", "call_ended"]
Decision = Literal["release", "cancel"]


@dataclass(frozen=True)
class FlushTimings:
    """Deadlines of the flush policy, in seconds."""

    no_speech_s: float = 1.0
    max_hold_s: float = 30.0


@dataclass(frozen=True)
class Verdict:
    """A decision about one held action."""

    action_id: str
    decision: Decision
    reason: str


@dataclass
class _Hold:
    action_id: str
    barge_in: BargeInPolicy
    held_at: float
    epoch: int
    carrier: int | None  # sequence number of the agent turn carrying the confirmation


_Predicate = Callable[[_Hold], bool]


@dataclass(frozen=True)
class _Turn:
    seq: int
    epoch: int


class FlushPolicy:
    """Tracks agent/user turns and decides when each held action is released."""

    def __init__(self, timings: FlushTimings | None = None) -> None:
        self.timings = timings or FlushTimings()
        self._epoch = 0
        self._turns_started = 0
        self._speaking: _Turn | None = None
        self._holds: dict[str, _Hold] = {}
        self._call_ended = False

    @property
    def held(self) -> tuple[str, ...]:
        return tuple(self._holds)

    def carrier_of(self, action_id: str) -> int | None:
        """The agent turn (1-based sequence) that will release the action, once known."""
        hold = self._holds.get(action_id)
        return hold.carrier if hold else None

    def hold(self, action_id: str, now: float, barge_in: BargeInPolicy = "deliver") -> list[Verdict]:
        """Start holding an action whose confirmation has just been handed to the harness."""
        if self._call_ended:
            return [Verdict(action_id, "release", "call_ended")]
        speaking = self._speaking
        carrier = speaking.seq if speaking is not None and speaking.epoch == self._epoch else None
        self._holds[action_id] = _Hold(action_id, barge_in, now, self._epoch, carrier)
        return []

    def observe(self, event: InputEvent, now: float) -> list[Verdict]:
        """Feed one harness event; returns the actions it releases or cancels."""
        if isinstance(event, AgentTurnStarted):
            ended = self._end_turn()  # a start without the previous idle: that turn is over
            self._turns_started += 1
            turn = _Turn(self._turns_started, self._epoch)
            self._speaking = turn
            for hold in self._holds.values():
                if hold.carrier is None and hold.epoch == turn.epoch:
                    hold.carrier = turn.seq
            return ended
        if isinstance(event, AgentTurnEnded):
            return self._end_turn()
        if isinstance(event, UserTurnStarted):
            self._epoch += 1
            return self._take(lambda h: h.barge_in == "cancel", "cancel", "barge_in")
        if isinstance(event, CallEnded):
            self._call_ended = True
            return self._take(lambda h: True, "release", "call_ended")
        return []

    def due(self, now: float) -> list[Verdict]:
        """Actions whose deadline has passed at `now`."""
        t = self.timings
        verdicts = self._take(lambda h: now >= h.held_at + t.max_hold_s, "release", "max_hold")
        verdicts += self._take(
            lambda h: h.carrier is None and now >= h.held_at + t.no_speech_s, "release", "no_speech"
        )
        return verdicts

    def next_deadline(self) -> float | None:
        """The earliest time at which `due` may release something, if anything is held."""
        t = self.timings
        deadlines = [h.held_at + t.max_hold_s for h in self._holds.values()]
        deadlines += [h.held_at + t.no_speech_s for h in self._holds.values() if h.carrier is None]
        return min(deadlines, default=None)

    def _end_turn(self) -> list[Verdict]:
        turn, self._speaking = self._speaking, None
        if turn is None:  # an idle without a turn (duplicate or out of order): nothing ends
            return []
        return self._take(lambda h: h.carrier == turn.seq, "release", "turn_ended")

    def _take(self, predicate: _Predicate, decision: Decision, reason: str) -> list[Verdict]:
        taken = [h for h in self._holds.values() if predicate(h)]
        for hold in taken:
            del self._holds[hold.action_id]
        return [Verdict(h.action_id, decision, reason) for h in taken]
