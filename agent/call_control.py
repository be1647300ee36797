"""One call's control plane: tools request actions, harness events release them, a sender
task delivers them to VoxEngine in order, and VoxEngine's outcome events (custom events on the
agent's websocket) say how each accepted action went on the phone.

A hang-up is one chain with VoxEngine as its single authority (docs/control-contract.md "The
hang-up chain"): the `end_call` tool only holds it; the POST goes when the goodbye turn ends;
VoxEngine hangs up the caller (after the goodbye played out at its end, with its playout guard)
and says `completed` just before. Only then does the agent end its own side (Line's `end_call`
frame to the harness), because Cartesia closes VoxEngine's socket when the agent ends the call
(Cartesia's Calls API, web-calls.mdx: code 1000 "call ended by agent"): ended earlier, the close
could race the goodbye still buffered at VoxEngine. An older scenario never says `completed`:
`end_call_grace_s` after VoxEngine accepted the hang-up the agent ends its side anyway.

`request` and `observe` are synchronous and never block or raise, because they run inside the
agent's tool and inside Line's event loop respectively. Delivery happens in `run`, a task owned
by the call's scope (see `agent/app.py`), never in the agent's turn task: a barge-in cancels
the turn, not the POST.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import anyio
from line.events import AgentTurnStarted, CallEnded, InputEvent, UserCustomSent
from loguru import logger

from agent.action_events import (
    ActionEvent,
    Armed,
    Cancelled,
    Delivered,
    Enqueued,
    Failed,
    Finished,
    OwnSideEnded,
    Released,
    SessionEnded,
    TelephonyReported,
)
from agent.actions import ActionKind, ActionOutcome, ControlAction, OutcomeStatus, Setback
from agent.call_observer import CallObserver
from agent.control_url import ControlTarget
from agent.flush_policy import FlushPolicy, FlushTimings, Verdict
from agent.telephony_outcomes import MalformedOutcome, TelephonyOutcome, parse_outcome
from agent.voxengine_client import VoxEngineClient

RequestStatus = Literal["held", "duplicate", "unavailable"]
# Called once per hang-up (an action that `ends_session`), from the call's scope, when the agent's
# side of the call should end: VoxEngine completed it (or its grace ran out), it reached a session
# already gone, or it finally failed (`outcome.status` says which).
EndOwnSide = Callable[[ActionOutcome], Awaitable[None]]
# How long after VoxEngine accepted a hang-up the agent waits for its `completed` before ending
# its own side anyway: an older scenario never sends it. Above the scenario's playout guard bound
# (HANGUP_PLAYOUT_GUARD_MAX_S, default 3 s), so the guard is never cut short by our side.
END_CALL_GRACE_S = 5.0
OWN_SIDE_BOUND_S = 5.0  # for the handler itself: a stuck websocket send must not hold the drain
_FINISHED: dict[OutcomeStatus, type[Finished]] = {
    "delivered": Delivered,
    "failed": Failed,
    "cancelled": Cancelled,
    "session_ended": SessionEnded,
}


@dataclass(frozen=True)
class RequestResult:
    """The answer to a tool's request: held now, held before, or impossible on this call."""

    status: RequestStatus
    action: ControlAction | None = None
    reason: str | None = None


@dataclass
class _Entry:
    action: ControlAction
    enqueued_at: float
    armed: bool = False
    released_at: float | None = None
    release_reason: str | None = None
    outcome: ActionOutcome | None = None
    telephony: TelephonyOutcome | None = None  # the last milestone VoxEngine reported

    @property
    def over(self) -> bool:
        """Nothing more will come of it: a new action of its kind may be asked for."""
        if self.outcome is None:
            return False
        if self.outcome.status != "delivered":
            return True
        return self.telephony is not None and self.telephony.final


class CallControl:
    """Pending control actions of one call, the flush policy that releases them, and delivery."""

    def __init__(
        self,
        *,
        target: ControlTarget | None,
        client: VoxEngineClient,
        refusal: str | None = None,
        timings: FlushTimings | None = None,
        observer: CallObserver | None = None,
        clock: Callable[[], float] = time.perf_counter,
        end_own_side: EndOwnSide | None = None,
        end_call_grace_s: float = END_CALL_GRACE_S,
    ) -> None:
        self.target = target
        self.refusal = refusal if target is None else None
        self._client = client
        self._policy = FlushPolicy(timings)
        self._observer = observer or CallObserver()
        self._clock = clock
        self._end_own_side = end_own_side
        self._end_call_grace_s = end_call_grace_s
        self._entries: list[_Entry] = []
        self._by_id: dict[str, _Entry] = {}
        self._by_kind: dict[str, _Entry] = {}
        self._setbacks: list[Setback] = []
        self._changed = anyio.Event()
        self._closed = False
        self._finished = anyio.Event()

    # ---- called from tools and from Line's event loop (synchronous, never raise) ----

    def request(self, kind: ActionKind, **params: str) -> RequestResult:
        """Hold a new action of `kind`, unless this call already has one or cannot have any."""
        if self.target is None:
            return RequestResult("unavailable", reason=self.refusal or "no_control_url")
        if self._finished.is_set():
            return RequestResult("unavailable", reason="call_ended")
        existing = self._by_kind.get(kind.name)
        if existing is not None and not existing.over:
            return RequestResult("duplicate", existing.action)
        now = self._clock()
        action = ControlAction(kind, dict(params))
        entry = _Entry(action, enqueued_at=now)
        self._entries.append(entry)
        self._by_id[action.id] = entry
        self._by_kind[kind.name] = entry
        self._event(entry, Enqueued(kind.name), now)
        self._apply(self._policy.hold(action.id, now, kind.barge_in), now)
        self._note_armed(now)
        self._wake()
        return RequestResult("held", action)

    def observe(self, event: InputEvent) -> bool:
        """Feed a harness event (from Line's run filter). Never cancels the agent's turn.

        True when the event should start the agent: VoxEngine reported that a transfer failed,
        and the caller, still on the line, must hear about it (`take_setbacks`)."""
        try:
            now = self._clock()
            self._observer.harness_event(event, now)
            verdicts = self._policy.observe(event, now)
            self._apply(verdicts, now)
            if isinstance(event, AgentTurnStarted):
                self._note_armed(now)
            if isinstance(event, CallEnded):
                self._closed = True
            resume = isinstance(event, UserCustomSent) and self._on_custom(event.metadata, now)
            if verdicts or self._closed:  # the sender has work; a spoken word alone gives it none
                self._wake()
            return resume
        except Exception:  # observing must never break Line's websocket loop
            logger.exception("control plane failed to observe a harness event")
            return False

    def in_flight(self, kind: ActionKind) -> bool:
        """An action of `kind` is held, on its way, or under way on the phone (a transfer ringing)."""
        entry = self._by_kind.get(kind.name)
        return entry is not None and not entry.over

    def take_setbacks(self) -> list[Setback]:
        """Actions that did not happen as the caller was told, not reported to the agent yet."""
        setbacks, self._setbacks = self._setbacks, []
        return setbacks

    def close(self) -> None:
        """The call is over: release whatever is pending now (idempotent)."""
        if not self._closed:
            self.observe(CallEnded())

    # ---- the call-scoped task ----

    async def run(self) -> None:
        """Warm the control connection, then deliver released actions in order until closed."""
        try:
            async with anyio.create_task_group() as tg:
                if self.target is not None:
                    tg.start_soon(self._client.warm, self.target)
                await self._deliver_in_order()
        finally:
            self._finish_undelivered("call_drained")
            self._finished.set()

    async def wait_finished(self) -> None:
        await self._finished.wait()

    @property
    def outcomes(self) -> list[ActionOutcome]:
        return [e.outcome for e in self._entries if e.outcome is not None]

    @property
    def pending(self) -> int:
        return sum(1 for e in self._entries if e.outcome is None)

    # ---- internals ----

    async def _deliver_in_order(self) -> None:
        while True:
            now = self._clock()
            self._apply(self._policy.due(now), now)
            head = next((e for e in self._entries if e.outcome is None), None)
            if head is None and self._closed:
                return
            if head is not None and head.released_at is not None:
                await self._deliver(head)
                continue
            changed = self._changed
            deadline = self._policy.next_deadline()
            with anyio.move_on_after(None if deadline is None else max(0.0, deadline - self._clock())):
                await changed.wait()

    async def _deliver(self, entry: _Entry) -> None:
        assert self.target is not None  # nothing is enqueued without a target
        action = entry.action

        def listener(event: ActionEvent) -> None:
            self._event(entry, event, self._clock())

        with self._observer.delivering(action):
            delivery = await self._client.deliver(self.target, action, listener)
        status: OutcomeStatus = "delivered" if delivery.accepted else "failed"
        if delivery.reason == "session_ended":
            status = "session_ended"
        outcome = self._finish(entry, status, delivery.reason, delivery.attempts)
        if action.kind.ends_session:  # a failed hang-up ends the agent's side: nobody to tell
            await self._after_hang_up(entry, outcome)
        elif status == "failed" and action.kind.reports_outcome:  # the caller was told it would happen
            self._setbacks.append(Setback(action.kind.name, "not_accepted"))

    async def _after_hang_up(self, entry: _Entry, outcome: ActionOutcome) -> None:
        """End the agent's side once VoxEngine hung up the caller (or will not)."""
        how = outcome.status if not outcome.delivered else await self._hang_up_completed(entry)
        if how == "call_ended" or self._end_own_side is None:
            return  # the harness already closed the call: its side is over
        self._event(entry, OwnSideEnded(how), self._clock())
        try:
            with anyio.move_on_after(OWN_SIDE_BOUND_S):
                await self._end_own_side(outcome)
        except Exception:
            logger.exception("control plane: ending the agent's side failed")

    async def _hang_up_completed(self, entry: _Entry) -> str:
        """Wait for VoxEngine's `completed` for an accepted hang-up: "completed", "grace" when it
        never came within `end_call_grace_s`, or "call_ended" when the harness closed first."""
        with anyio.move_on_after(self._end_call_grace_s):
            while not self._closed:
                if entry.telephony is not None and entry.telephony.status == "completed":
                    return "completed"
                await self._changed.wait()
            return "call_ended"
        logger.warning(
            f"control action {entry.action.kind.name} id={entry.action.id}: no completed from "
            f"VoxEngine within {self._end_call_grace_s:g} s; ending the agent's side"
        )
        return "grace"

    def _on_custom(self, metadata: object, now: float) -> bool:
        """A custom event from VoxEngine: an action's telephony milestone, or ignored (logged)."""
        try:
            outcome = parse_outcome(metadata)
        except MalformedOutcome as exc:
            logger.warning(f"custom event ignored: malformed action outcome ({exc} is invalid)")
            return False
        if outcome is None:
            logger.info("custom event ignored: not an action outcome")
            return False
        entry = self._by_id.get(outcome.action_id)
        # Sent is enough: VoxEngine may report a dial that failed at once before its answer is read.
        sent = entry is not None and entry.released_at is not None
        refused = entry is not None and entry.outcome is not None and not entry.outcome.delivered
        if entry is None or not sent or refused or entry.action.kind.name != outcome.action:
            logger.warning(f"custom event ignored: an outcome for no sent {outcome.action} of this call")
            return False
        if entry.telephony is not None and entry.telephony.final:
            logger.info(f"custom event ignored: {outcome.action} id={outcome.action_id} already ended")
            return False
        entry.telephony = outcome
        reported = TelephonyReported(
            outcome.status,
            outcome.reason,
            outcome.sip_code,
            outcome.playout,
            outcome.destination,
            outcome.attempt,
            outcome.amd,
        )
        self._event(entry, reported, now)
        logger.info(
            f"control action {outcome.action} id={outcome.action_id} {outcome.status}"
            + (f" destination={outcome.destination}" if outcome.destination else "")
            + (f" attempt={outcome.attempt}" if outcome.attempt else "")
            + (f" reason={outcome.reason}" if outcome.reason else "")
            + (f" amd={outcome.amd}" if outcome.amd else "")
            + (f" playout_offset_ms={outcome.playout}" if outcome.playout is not None else "")
        )
        if outcome.status == "completed":
            self._wake()  # the sender waits for it to end the agent's side
        if not outcome.failed or self._closed:
            return False
        self._setbacks.append(Setback(outcome.action, outcome.known_reason))
        return True

    def _apply(self, verdicts: list[Verdict], now: float) -> None:
        for verdict in verdicts:
            entry = self._by_id[verdict.action_id]
            entry.released_at, entry.release_reason = now, verdict.reason
            if verdict.decision == "cancel":
                self._finish(entry, "cancelled", verdict.reason, 0)
            else:
                self._event(entry, Released(verdict.reason), now)

    def _note_armed(self, now: float) -> None:
        for entry in self._entries:
            if entry.armed or entry.released_at is not None:
                continue
            turn = self._policy.carrier_of(entry.action.id)
            if turn is not None:
                entry.armed = True
                self._event(entry, Armed(turn), now)

    def _finish(self, entry: _Entry, status: OutcomeStatus, reason: str, attempts: int) -> ActionOutcome:
        now = self._clock()
        outcome = ActionOutcome(
            entry.action, status, reason, attempts, entry.enqueued_at, entry.released_at, now
        )
        entry.outcome = outcome
        self._event(entry, _FINISHED[status](reason, attempts), now)
        log = logger.info if status in ("delivered", "session_ended") else logger.warning
        log(
            f"control action {entry.action.kind.name} id={entry.action.id} {status} "
            f"reason={reason} attempts={attempts} released_by={entry.release_reason} to={self.target}"
        )
        return outcome

    def _finish_undelivered(self, reason: str) -> None:
        # Only reached when the drain bound cut delivery short: say so rather than lose it.
        for entry in self._entries:
            if entry.outcome is None:
                self._finish(entry, "failed", reason, 0)

    def _event(self, entry: _Entry, event: ActionEvent, at: float) -> None:
        self._observer.action_event(entry.action, event, at)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
