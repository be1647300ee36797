"""Property tests of the flush policy and of the control plane that runs it.

1. `FlushPolicy` (pure, fast: many examples) against a reference model written from the rules in
   its docstring and the README, under random interleavings of agent/user turn events, holds
   (both barge-in policies), time advances, deadline checks and the call's end. Checked at every
   step: the same verdicts as the model; every verdict is about a held action, once; a
   `turn_ended` release only when the action's carrier turn (a turn of the action's epoch that was
   speaking at the hold or started after it) has just ended; a deadline release never before its
   deadline; `next_deadline` is exact. At the end (the call ends, or time runs past `max_hold`)
   every held action has exactly one verdict.
2. `CallControl` against the VoxEngine emulator (real loopback HTTP; fewer examples): the same
   random interleavings drive the real control plane (on a fake clock, so deadlines are exact);
   it releases what the pure policy releases, for the same reasons, never POSTs an action before
   its release, records exactly one outcome per action and one effect per accepted action, and
   delivers in the order the actions were asked (its documented order; see the note at
   `test_call_control_delivers_what_the_policy_releases_in_order`).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from line.events import (
    AgentTurnEnded,
    AgentTurnStarted,
    CallEnded,
    InputEvent,
    UserTurnEnded,
    UserTurnStarted,
)

from agent.action_events import ActionEvent, Cancelled, Delivered, Failed, Released, Sent
from agent.actions import CALL_TRANSFER, END_CALL, ActionKind, BargeInPolicy, ControlAction
from agent.call_control import CallControl
from agent.call_observer import CallObserver
from agent.control_url import parse_control_url
from agent.flush_policy import FlushPolicy, FlushTimings, Verdict
from agent.retry_policy import RetryPolicy
from agent.voxengine_client import VoxEngineClient
from lab.voxengine_emulator import VoxEngineEmulator
from tests.tiers import examples

# ---- 1. the pure policy against a reference model ---------------------------------------------


@dataclass
class _ModelTurn:
    seq: int
    epoch: int
    ended: bool = False


@dataclass
class _ModelHold:
    epoch: int
    held_at: float
    barge_in: BargeInPolicy
    carrier: int | None  # the turn whose end releases it


@dataclass
class FlushModel:
    """The release rules, restated from the documentation, with no code shared with FlushPolicy."""

    timings: FlushTimings
    epoch: int = 0
    turns: list[_ModelTurn] = field(default_factory=list)
    speaking: _ModelTurn | None = None
    holds: dict[str, _ModelHold] = field(default_factory=dict)
    call_ended: bool = False

    def hold(self, action_id: str, now: float, barge_in: BargeInPolicy) -> set[tuple[str, str, str]]:
        if self.call_ended:  # after the call ended, a hold is released at once
            return {(action_id, "release", "call_ended")}
        # Carried by the turn already speaking if it belongs to this epoch, else by the next one.
        speaking = self.speaking
        carrier = speaking.seq if speaking is not None and speaking.epoch == self.epoch else None
        self.holds[action_id] = _ModelHold(self.epoch, now, barge_in, carrier)
        return set()

    def _turn_over(self) -> set[tuple[str, str, str]]:
        turn, self.speaking = self.speaking, None
        if turn is None:
            return set()
        turn.ended = True
        return self._take(lambda h: h.carrier == turn.seq, "release", "turn_ended")

    def agent_started(self) -> set[tuple[str, str, str]]:
        verdicts = self._turn_over()  # a start without the previous idle ends that turn
        turn = _ModelTurn(len(self.turns) + 1, self.epoch)
        self.turns.append(turn)
        self.speaking = turn
        for hold in self.holds.values():
            if hold.carrier is None and hold.epoch == turn.epoch:
                hold.carrier = turn.seq
        return verdicts

    def agent_ended(self) -> set[tuple[str, str, str]]:
        return self._turn_over()

    def user_started(self) -> set[tuple[str, str, str]]:
        self.epoch += 1
        return self._take(lambda h: h.barge_in == "cancel", "cancel", "barge_in")

    def ended(self) -> set[tuple[str, str, str]]:
        self.call_ended = True
        return self._take(lambda h: True, "release", "call_ended")

    def due(self, now: float) -> set[tuple[str, str, str]]:
        t = self.timings
        verdicts = self._take(lambda h: now >= h.held_at + t.max_hold_s, "release", "max_hold")
        return verdicts | self._take(
            lambda h: h.carrier is None and now >= h.held_at + t.no_speech_s, "release", "no_speech"
        )

    def _take(self, predicate: Any, decision: str, reason: str) -> set[tuple[str, str, str]]:
        taken = [i for i, h in self.holds.items() if predicate(h)]
        for action_id in taken:
            del self.holds[action_id]
        return {(i, decision, reason) for i in taken}


def as_set(verdicts: list[Verdict]) -> set[tuple[str, str, str]]:
    assert len({v.action_id for v in verdicts}) == len(verdicts), f"one action twice: {verdicts}"
    return {(v.action_id, v.decision, v.reason) for v in verdicts}


TIMINGS = st.builds(
    FlushTimings,
    no_speech_s=st.sampled_from([0.5, 1.0, 2.0]),
    max_hold_s=st.sampled_from([1.0, 3.0, 30.0]),
)
STEPS = st.sampled_from([0.0, 0.05, 0.3, 0.5, 0.999, 1.0, 1.5, 3.0, 31.0])


class FlushPolicyMachine(RuleBasedStateMachine):
    """Random interleavings against FlushPolicy and the model; verdicts must agree, step by step,
    and each verdict must be justified by the documented rules (checked apart from the model)."""

    END = "call_ended"

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.next_id = 0
        # At each hold: the time, the epoch, how many agent turns had started, the one speaking.
        self.context: dict[str, tuple[float, int, int, _ModelTurn | None]] = {}
        self.verdicts: dict[str, tuple[str, str, float]] = {}  # id -> (decision, reason, at)

    @initialize(timings=TIMINGS)
    def start(self, timings: FlushTimings) -> None:
        self.timings = timings
        self.policy = FlushPolicy(timings)
        self.model = FlushModel(timings)

    def _record(
        self,
        got: list[Verdict],
        expected: set[tuple[str, str, str]],
        cause: str,
        ended: _ModelTurn | None = None,
    ) -> None:
        verdicts = as_set(got)
        assert verdicts == expected, f"{cause} at t={self.now}: policy {verdicts} != model {expected}"
        for action_id, decision, reason in verdicts:
            assert action_id in self.context, f"a verdict about {action_id}, which was never held"
            assert action_id not in self.verdicts, f"{action_id} got a second verdict: {reason}"
            self._justify(action_id, decision, reason, cause, ended)
            self.verdicts[action_id] = (decision, reason, self.now)

    def _justify(
        self, action_id: str, decision: str, reason: str, cause: str, ended: _ModelTurn | None
    ) -> None:
        held_at, epoch, started_before, speaking = self.context[action_id]
        t = self.timings
        # Turns that could carry it: the one speaking at the hold, or a later one, of its epoch.
        carriers = [
            turn
            for turn in self.model.turns
            if turn.epoch == epoch and (turn is speaking or turn.seq > started_before)
        ]
        if reason == "turn_ended":
            assert cause in ("AgentTurnStarted", "AgentTurnEnded") and ended is not None
            assert ended.epoch == epoch, "released by the end of a turn of another epoch"
            assert carriers and carriers[0] is ended, "released by a turn that did not carry it"
        elif reason == "no_speech":
            assert cause == "due" and self.now >= held_at + t.no_speech_s, "no_speech before its deadline"
            assert carriers == [], "no_speech release of an action whose turn had started"
        elif reason == "max_hold":
            assert cause in ("due", "final due") and self.now >= held_at + t.max_hold_s
        elif reason == "call_ended":
            assert cause in ("CallEnded", "hold") and self.model.call_ended
        else:
            assert (decision, reason, cause) == ("cancel", "barge_in", "UserTurnStarted")

    @rule(barge_in=st.sampled_from(["deliver", "deliver", "cancel"]))
    def hold(self, barge_in: BargeInPolicy) -> None:
        self.next_id += 1
        action_id = f"a{self.next_id}"
        self.context[action_id] = (self.now, self.model.epoch, len(self.model.turns), self.model.speaking)
        expected = self.model.hold(action_id, self.now, barge_in)
        self._record(self.policy.hold(action_id, self.now, barge_in), expected, "hold")

    @rule()
    def agent_turn_started(self) -> None:
        ending = self.model.speaking
        expected = self.model.agent_started()
        got = self.policy.observe(AgentTurnStarted(), self.now)
        self._record(got, expected, "AgentTurnStarted", ending)

    @rule()
    def agent_turn_ended(self) -> None:
        ending = self.model.speaking
        expected = self.model.agent_ended()
        self._record(self.policy.observe(AgentTurnEnded(), self.now), expected, "AgentTurnEnded", ending)

    @rule()
    def user_turn_started(self) -> None:
        expected = self.model.user_started()
        self._record(self.policy.observe(UserTurnStarted(), self.now), expected, "UserTurnStarted")

    @rule()
    def user_turn_ended(self) -> None:
        self._record(self.policy.observe(UserTurnEnded(), self.now), set(), "UserTurnEnded")

    @rule(data=st.data())
    def call_ended(self, data: st.DataObject) -> None:
        # Rare (most interleavings should run on a live call), and may come twice.
        if data.draw(st.integers(0, 9)) == 0:
            self._record(self.policy.observe(CallEnded(), self.now), self.model.ended(), "CallEnded")

    @rule(dt=STEPS)
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule()
    def due(self) -> None:
        self._record(self.policy.due(self.now), self.model.due(self.now), "due")

    @invariant()
    def same_holds(self) -> None:
        if not hasattr(self, "policy"):
            return
        assert set(self.policy.held) == set(self.model.holds)
        for action_id, hold in self.model.holds.items():
            assert self.policy.carrier_of(action_id) == hold.carrier, action_id

    @invariant()
    def next_deadline_is_exact(self) -> None:
        if not hasattr(self, "policy"):
            return
        deadline = self.policy.next_deadline()
        if not self.model.holds:
            assert deadline is None
            return
        assert deadline is not None
        assert copy.deepcopy(self.policy).due(deadline - 1e-6) == [], "due before next_deadline"
        assert copy.deepcopy(self.policy).due(deadline) != [], "nothing due at next_deadline"

    def teardown(self) -> None:
        if not hasattr(self, "policy"):
            return
        if self.END == "call_ended":
            if not self.model.call_ended:
                self._record(self.policy.observe(CallEnded(), self.now), self.model.ended(), "CallEnded")
        else:  # time runs out: max_hold releases whatever a turn end did not
            self.now += self.timings.max_hold_s
            self._record(self.policy.due(self.now), self.model.due(self.now), "final due")
        assert self.policy.held == () and self.policy.next_deadline() is None
        assert set(self.verdicts) == set(self.context), "an action without a verdict"


class FlushPolicyUntilMaxHold(FlushPolicyMachine):
    END = "max_hold"


PURE = settings(max_examples=examples(300), stateful_step_count=40, deadline=None, database=None)
TestFlushPolicyToCallEnd = FlushPolicyMachine.TestCase
TestFlushPolicyToCallEnd.settings = PURE
TestFlushPolicyToMaxHold = FlushPolicyUntilMaxHold.TestCase
TestFlushPolicyToMaxHold.settings = PURE


# ---- 2. CallControl against the emulator ------------------------------------------------------

KINDS: dict[str, ActionKind] = {
    "end_call": END_CALL,
    "call_transfer": CALL_TRANSFER,
    # Same wire names (the emulator knows them), the other barge-in policy.
    "end_call/cancel": dataclasses.replace(END_CALL, barge_in="cancel"),
    "call_transfer/cancel": dataclasses.replace(CALL_TRANSFER, barge_in="cancel"),
}
_OP_CHOICES: list[tuple[str, str]] = [
    *[("request", kind) for kind in sorted(KINDS)],
    ("request", "call_transfer"),  # the delivered kinds a little more often
    ("request", "end_call"),
    *[(name, "") for name in ("agent_start", "agent_end", "user_start", "user_end")],
    ("agent_start", ""),
    ("agent_end", ""),
    *[("advance", dt) for dt in ("0.2", "0.6", "1.1", "5")],
]
OPS = st.lists(st.sampled_from(_OP_CHOICES), max_size=16)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Recorder(CallObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, ActionEvent]] = []  # (action id, event)
        self.changed = anyio.Event()

    def action_event(self, action: ControlAction, event: ActionEvent, at: float) -> None:
        self.events.append((action.id, event))
        self.changed.set()
        self.changed = anyio.Event()

    def verdicts(self) -> set[tuple[str, str, str]]:
        found = set()
        for action_id, step in self.events:
            if isinstance(step, Released):
                found.add((action_id, "release", step.reason))
            elif isinstance(step, Cancelled):
                found.add((action_id, "cancel", step.reason))
        return found

    async def wait_verdicts(self, expected: set[tuple[str, str, str]]) -> None:
        with anyio.fail_after(5):
            while not expected <= self.verdicts():
                await self.changed.wait()

    def of_type(self, *types: type) -> set[str]:
        return {action_id for action_id, step in self.events if isinstance(step, types)}

    async def wait_finished(self, action_ids: list[str]) -> None:
        with anyio.fail_after(5):
            while not set(action_ids) <= self.of_type(Delivered, Failed):
                await self.changed.wait()


EVENTS: dict[str, InputEvent] = {
    "agent_start": AgentTurnStarted(),
    "agent_end": AgentTurnEnded(),
    "user_start": UserTurnStarted(),
    "user_end": UserTurnEnded(),
}
TIMING = FlushTimings(no_speech_s=1.0, max_hold_s=3.0)


def deliverable_head(asked: list[str], verdicts: set[tuple[str, str, str]]) -> list[str]:
    """The actions that may be POSTed now: released ones, in the order asked, up to the first
    action still held (cancelled ones are skipped: they are over)."""
    decided = {action_id: decision for action_id, decision, _ in verdicts}
    head = []
    for action_id in asked:
        if action_id not in decided:
            break
        if decided[action_id] == "release":
            head.append(action_id)
    return head


async def play(ops: list[tuple[str, str]]) -> None:
    clock = _Clock()
    recorder = _Recorder()
    shadow = FlushPolicy(TIMING)
    expected: set[tuple[str, str, str]] = set()
    asked: list[str] = []
    retry = RetryPolicy(deadline_s=2.0, attempt_timeout_s=0.5, backoff_initial_s=0.01, backoff_max_s=0.02)
    # The session outlives the example: its termination after a hang-up runs on the wall clock
    # (1 s), the policy here on a fake one, and a slow machine would let it land between steps.
    # What a terminated session answers: tests/lab/test_voxengine_emulator.py, and the control
    # plane meeting one: tests/timing/test_action_timing.py.
    async with VoxEngineEmulator(terminate_grace_s=3600) as emulator, emulator.client() as http:
        target = parse_control_url(emulator.control_url("prop"), allow_local=True)
        control = CallControl(
            target=target,
            client=VoxEngineClient(http, retry=retry),
            timings=TIMING,
            observer=recorder,
            clock=clock,
            end_call_grace_s=0.0,  # no websocket here, so no `completed` to wait for
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(control.run)
            for op, arg in ops:
                now = clock.now
                if op == "request":
                    kind = KINDS[arg]
                    result = control.request(kind)
                    if result.status == "held":
                        assert result.action is not None
                        asked.append(result.action.id)
                        expected |= as_set(shadow.hold(result.action.id, now, kind.barge_in))
                    else:  # one action per kind and call: the first one is kept
                        assert result.status == "duplicate"
                elif op == "advance":
                    clock.now += float(arg)
                    expected |= as_set(shadow.due(clock.now))
                    control.observe(UserTurnEnded())  # any harness event wakes the sender
                else:
                    control.observe(EVENTS[op])
                    expected |= as_set(shadow.observe(EVENTS[op], now))
                # The control plane reaches the shadow policy's verdicts (deadline ones once its
                # sender task has looked at the clock) before the next step.
                await recorder.wait_verdicts(expected)
                # Let the sender act on them, then check it POSTs only the released actions at the
                # head of the line (in the order asked), and delivers all of those.
                await anyio.lowlevel.checkpoint()
                head = deliverable_head(asked, expected)
                assert recorder.of_type(Sent) <= set(head), f"POSTed out of order: asked {asked}"
                await recorder.wait_finished(head)
            control.close()
            expected |= as_set(shadow.observe(CallEnded(), clock.now))
            with anyio.fail_after(10):
                await control.wait_finished()
        effects = list(emulator.effects)
        requests = list(emulator.requests)

    assert recorder.verdicts() == expected, "the control plane released otherwise than its policy"
    # Exactly one outcome per action asked.
    outcomes = {o.action.id: o for o in control.outcomes}
    assert len(control.outcomes) == len(outcomes) == len(asked) and set(outcomes) == set(asked)
    cancelled = {i for i, d, _ in expected if d == "cancel"}
    for action_id in asked:
        status = outcomes[action_id].status
        assert (status == "cancelled") == (action_id in cancelled), (action_id, status)
    # Nothing POSTed before its release; nothing cancelled is ever POSTed.
    names = [(i, step.name) for i, step in recorder.events]
    for action_id in asked:
        mine = [n for i, n in names if i == action_id]
        if "sent" in mine:
            assert "released" in mine and mine.index("released") < mine.index("sent"), mine
    assert not {r.id for r in requests} & cancelled
    # Delivered in the order asked, each at most one effect, accepted ones exactly one.
    sent_order = list(dict.fromkeys(i for i, n in names if n == "sent"))
    assert sent_order == [i for i in asked if i not in cancelled]
    assert [r.id for r in requests] == sent_order  # one POST each: the emulator never failed
    assert len({e.id for e in effects}) == len(effects)
    accepted = {i for i, o in outcomes.items() if o.status == "delivered"}
    assert {e.id for e in effects} == accepted
    released_order = list(dict.fromkeys(i for i, n in names if n == "released"))
    event(f"actions asked: {len(asked)}, delivered: {len(accepted)}")
    event(
        f"released in another order than asked: {released_order != [i for i in asked if i in released_order]}"
    )
    for outcome in outcomes.values():
        if outcome.status == "failed":  # only the contract's refusal (a hang-up came first)
            assert outcome.reason == "refused:call_ended", outcome


@settings(
    max_examples=examples(120), deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(ops=OPS)
# Asked transfer then hang-up; the hang-up's turn ends first, the transfer goes at no_speech.
@example(
    ops=[
        ("request", "call_transfer"),
        ("user_start", ""),
        ("request", "end_call"),
        ("agent_start", ""),
        ("agent_end", ""),
        ("advance", "1.1"),
    ]
)
# Both carried by one turn; a barge-in cancels one of them mid-turn.
@example(
    ops=[
        ("agent_start", ""),
        ("request", "call_transfer/cancel"),
        ("request", "end_call"),
        ("user_start", ""),
        ("agent_end", ""),
    ]
)
def test_call_control_delivers_what_the_policy_releases_in_order(ops: list[tuple[str, str]]) -> None:
    """Releases, outcomes and delivery order of the real control plane over real HTTP.

    Delivery order is the order the actions were *asked* (CallControl delivers the oldest
    undelivered action first and waits for its release; see `_deliver_in_order`). An action asked
    later but released earlier (e.g. its turn ended while the first waits for `no_speech`) is
    held back until the first one is delivered: release order is kept exactly when it matches
    the order asked.
    """
    anyio.run(play, ops)
