"""VoxEngine's outcome events (docs/control-contract.md "Outcome events"): read strictly, attached
to their action, and a failed transfer hands the call back to the agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from line.events import AgentTurnEnded, AgentTurnStarted, UserCustomSent

from agent.action_events import ActionEvent, Delivered, Released, TelephonyReported, step_name
from agent.actions import CALL_TRANSFER, END_CALL, ControlAction, Setback
from agent.call_control import CallControl
from agent.call_log import CartesiaCallLog, FrameSender
from agent.call_observer import CallObserver
from agent.control_url import parse_control_url
from agent.retry_policy import RetryPolicy
from agent.telephony_outcomes import MalformedOutcome, TelephonyOutcome, parse_outcome
from agent.voxengine_client import VoxEngineClient
from lab.voxengine_emulator import VoxEngineEmulator

pytestmark = pytest.mark.anyio


def outcome(action_id: str = "a1", status: str = "failed", **extra: Any) -> dict[str, Any]:
    base = {"vox_event": "action_outcome", "id": action_id, "action": "call_transfer", "status": status}
    if status == "failed":
        base["reason"] = "busy"
    return {**base, **extra}


def test_an_outcome_is_read_strictly() -> None:
    assert parse_outcome(outcome(sip_code=486)) == TelephonyOutcome(
        "a1", "call_transfer", "failed", "busy", 486
    )
    assert parse_outcome(outcome(status="ringing")) == TelephonyOutcome("a1", "call_transfer", "ringing")
    assert parse_outcome({"something": "else"}) is None  # not ours: ignored quietly
    assert parse_outcome("not a mapping") is None
    unknown = parse_outcome(outcome(reason="moon_phase"))
    assert unknown is not None and unknown.known_reason == "error"
    for bad, field in [
        (outcome(action_id="a b"), "id"),
        (outcome(action_id="x" * 129), "id"),
        (outcome(action="reboot"), "action"),
        (outcome(status="exploded"), "status"),
        (outcome(reason=None), "reason"),
        (outcome(reason="Busy!"), "reason"),
        (outcome(status="ringing", reason="busy"), "reason"),
        (outcome(sip_code="486"), "sip_code"),
        (outcome(sip_code=True), "sip_code"),
        (outcome(sip_code=999), "sip_code"),
        (outcome(status="completed"), "status"),  # a transfer is never "completed"
        (outcome(action="end_call", status="ringing"), "status"),  # nor a hang-up "ringing"
        (outcome(status="connected", playout_offset_ms="120"), "playout_offset_ms"),
        (outcome(status="connected", playout_offset_ms=True), "playout_offset_ms"),
        (outcome(status="connected", playout_offset_ms=1.5), "playout_offset_ms"),
        (outcome(status="connected", playout_offset_ms=10**12), "playout_offset_ms"),
    ]:
        with pytest.raises(MalformedOutcome, match=field):
            parse_outcome(bad)


def test_a_hang_ups_completion_and_playout_offsets_are_read() -> None:
    done = parse_outcome(outcome(action="end_call", status="completed", playout_offset_ms=-340))
    assert done == TelephonyOutcome(
        "a1", "end_call", "completed", playout_offset_ms=-340, playout_reported=True
    )
    assert done.playout == -340  # negative: the caller's hearing of the agent was cut short
    unknown = parse_outcome(outcome(action="end_call", status="completed", playout_offset_ms=None))
    assert unknown is not None and unknown.playout == "unknown"  # null is unknown, never 0
    older = parse_outcome(outcome(action="end_call", status="completed"))  # an older scenario
    assert older is not None and older.playout is None and not older.playout_reported
    bridged = parse_outcome(outcome(status="connected", playout_offset_ms=0))
    assert bridged is not None and bridged.playout == 0


class Events(CallObserver):
    def __init__(self) -> None:
        self.events: list[ActionEvent] = []
        self.accepted = anyio.Event()  # VoxEngine accepted it: the action is delivered

    def action_event(self, action: ControlAction, event: ActionEvent, at: float) -> None:
        self.events.append(event)
        if isinstance(event, Delivered):
            self.accepted.set()


@asynccontextmanager
async def accepted_transfer(observer: Events) -> AsyncIterator[tuple[CallControl, str]]:
    """A live CallControl whose transfer VoxEngine accepted, and the action's id."""
    async with VoxEngineEmulator() as emulator, emulator.client() as http:
        client = VoxEngineClient(http, retry=RetryPolicy(deadline_s=2.0, attempt_timeout_s=0.5))
        target = parse_control_url(emulator.control_url())
        control = CallControl(target=target, client=client, observer=observer)
        async with anyio.create_task_group() as tg:
            tg.start_soon(control.run)
            result = control.request(CALL_TRANSFER, summary="billing")
            control.observe(AgentTurnStarted())
            control.observe(AgentTurnEnded())
            with anyio.fail_after(5):
                await observer.accepted.wait()
            assert result.action is not None
            yield control, result.action.id
            tg.cancel_scope.cancel()


async def test_a_failed_transfer_resumes_the_conversation_once_and_frees_the_kind() -> None:
    events = Events()
    async with accepted_transfer(events) as (control, action_id):
        assert control.request(CALL_TRANSFER).status == "duplicate"  # under way: still the same one
        assert control.observe(UserCustomSent(metadata=outcome(action_id, "ringing"))) is False
        assert control.observe(UserCustomSent(metadata=outcome(action_id, sip_code=486))) is True
        assert control.take_setbacks() == [Setback("call_transfer", "busy")] and control.take_setbacks() == []
        assert control.observe(UserCustomSent(metadata=outcome(action_id))) is False  # already over
        again = control.request(CALL_TRANSFER)
    names = [step_name(e) for e in events.events]
    first = names.index("delivered")
    assert names[first : first + 3] == ["delivered", "telephony.ringing", "telephony.failed"]
    assert TelephonyReported("failed", "busy", 486) in events.events
    assert again.status == "held" and again.action is not None and again.action.id != action_id


async def test_events_that_are_not_for_an_accepted_action_of_this_call_never_start_the_agent() -> None:
    events = Events()
    async with accepted_transfer(events) as (control, action_id):
        before = len(events.events)
        for metadata in [
            {"hello": "world"},  # not an outcome
            outcome(action_id, status="sideways"),  # malformed
            outcome("someone-else"),  # no such action
            outcome(action_id, action="end_call"),  # not what this id is
        ]:
            assert control.observe(UserCustomSent(metadata=metadata)) is False
        assert len(events.events) == before and control.take_setbacks() == []


async def test_a_transfer_voxengine_never_took_is_a_setback_too() -> None:
    async with VoxEngineEmulator() as emulator:
        url = emulator.control_url()
    async with emulator.client() as http:  # the emulator is gone: nothing answers
        client = VoxEngineClient(http, retry=RetryPolicy(deadline_s=0.3, attempt_timeout_s=0.1))
        control = CallControl(target=parse_control_url(url), client=client)
        async with anyio.create_task_group() as tg:
            tg.start_soon(control.run)
            control.request(CALL_TRANSFER)
            control.request(END_CALL)
            control.close()
            with anyio.fail_after(5):
                await control.wait_finished()
    assert control.take_setbacks() == [Setback("call_transfer", "not_accepted")]  # not the hang-up


class Sink:
    def __init__(self) -> None:
        self.frames: list[Any] = []

    async def send_json(self, data: Any) -> None:
        self.frames.append(data)


async def test_milestones_reach_cartesias_call_log_as_line_frames() -> None:
    frames, sink = FrameSender(), Sink()
    log = CartesiaCallLog(frames)
    action = ControlAction(CALL_TRANSFER, {"summary": "x"})
    log.action_event(action, Released("turn_ended"), 10.0)
    log.action_event(action, Delivered("accepted", 1), 10.004)
    log.action_event(action, TelephonyReported("failed", "busy", 486), 12.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(frames.run, sink)
        frames.close()
    events = [f for f in sink.frames if f["type"] == "log_event"]
    metrics = {f["name"]: f["value"] for f in sink.frames if f["type"] == "log_metric"}
    assert [e["metadata"]["message"] for e in events] == [
        "call_transfer accepted by VoxEngine (accepted)",
        "call_transfer did not connect (busy)",
    ]
    assert [e["metadata"]["level"] for e in events] == ["info", "error"]
    assert events[1]["metadata"]["metadata"] == {
        "id": action.id,
        "action": "call_transfer",
        "event": "telephony.failed",
        "reason": "busy",
        "sip_code": 486,
    }
    assert metrics == {"vox_action_attempts": 1, "vox_action_dead_air_ms": 4.0}


async def test_a_playout_offset_reaches_cartesias_call_log_as_a_metric_and_null_as_unknown() -> None:
    frames, sink = FrameSender(), Sink()
    log = CartesiaCallLog(frames)
    hang_up, transfer = ControlAction(END_CALL), ControlAction(CALL_TRANSFER, {"summary": "x"})
    log.action_event(hang_up, TelephonyReported("completed", playout_offset_ms=850), 12.0)
    log.action_event(transfer, TelephonyReported("connected", playout_offset_ms="unknown"), 13.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(frames.run, sink)
        frames.close()
    events = [f["metadata"] for f in sink.frames if f["type"] == "log_event"]
    metrics = [(f["name"], f["value"]) for f in sink.frames if f["type"] == "log_metric"]
    assert [e["message"] for e in events] == [
        "end_call completed: VoxEngine hung up the caller",
        "call_transfer connected",
    ]
    assert [e["metadata"]["playout_offset_ms"] for e in events] == [850, "unknown"]
    assert metrics == [("vox_playout_offset_ms", 850)]  # the unknown one is no metric, never 0


async def test_a_completed_hang_up_carries_its_playout_offset_to_the_action() -> None:
    events = Events()
    async with VoxEngineEmulator() as emulator, emulator.client() as http:
        client = VoxEngineClient(http, retry=RetryPolicy(deadline_s=2.0, attempt_timeout_s=0.5))
        control = CallControl(
            target=parse_control_url(emulator.control_url()), client=client, observer=events
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(control.run)
            result = control.request(END_CALL)
            control.observe(AgentTurnStarted())
            control.observe(AgentTurnEnded())
            with anyio.fail_after(5):
                await events.accepted.wait()
            assert result.action is not None
            metadata = outcome(result.action.id, "completed", action="end_call", playout_offset_ms=None)
            assert control.observe(UserCustomSent(metadata=metadata)) is False
            control.close()
    assert TelephonyReported("completed", playout_offset_ms="unknown") in events.events
    assert control.request(END_CALL).status == "unavailable"  # the call is over


def test_a_transfer_to_named_destinations_reports_each_attempt() -> None:
    # docs/control-contract.md, issue #18: destination, attempt, attempt_failed, voicemail, amd.
    tried = parse_outcome(
        outcome(status="attempt_failed", reason="voicemail", destination="sales", attempt=1)
    )
    assert tried is not None and not tried.failed and not tried.final  # the next one is dialled
    assert (tried.destination, tried.attempt, tried.known_reason) == ("sales", 1, "voicemail")
    connected = parse_outcome(outcome(status="connected", destination="support", attempt=2, amd="timeout"))
    assert connected is not None and connected.final and connected.amd == "timeout"
    assert parse_outcome(outcome(status="ringing", destination="default", attempt=1)) is not None
    for bad, field in [
        (outcome(status="attempt_failed"), "reason"),  # which failure: required, as for failed
        (outcome(destination="Sales"), "destination"),
        (outcome(destination="x" * 65), "destination"),
        (outcome(destination=7), "destination"),
        (outcome(attempt=0), "attempt"),
        (outcome(attempt="2"), "attempt"),
        (outcome(attempt=True), "attempt"),
        (outcome(status="connected", amd="machine"), "amd"),  # a machine is never connected
        (outcome(status="ringing", amd="human"), "amd"),
    ]:
        with pytest.raises(MalformedOutcome, match=field):
            parse_outcome(bad)


async def test_an_attempt_that_failed_keeps_the_transfer_under_way_until_the_last_one() -> None:
    events = Events()
    async with accepted_transfer(events) as (control, action_id):
        tried = outcome(
            action_id, "attempt_failed", reason="busy", destination="sales", attempt=1, sip_code=486
        )
        assert control.observe(UserCustomSent(metadata=tried)) is False  # the caller waits on
        assert control.in_flight(CALL_TRANSFER) and control.take_setbacks() == []
        ringing = outcome(action_id, "ringing", destination="support", attempt=2)
        assert control.observe(UserCustomSent(metadata=ringing)) is False
        last = outcome(action_id, reason="voicemail", destination="support", attempt=2)
        assert control.observe(UserCustomSent(metadata=last)) is True
        assert control.take_setbacks() == [Setback("call_transfer", "voicemail")]
        assert not control.in_flight(CALL_TRANSFER)
    attempt_failed = TelephonyReported("attempt_failed", "busy", 486, destination="sales", dial_attempt=1)
    assert attempt_failed in events.events


async def test_an_attempt_that_failed_reaches_cartesias_call_log() -> None:
    frames = FrameSender()
    log = CartesiaCallLog(frames)
    action = ControlAction(CALL_TRANSFER)
    log.action_event(action, TelephonyReported("attempt_failed", "busy", destination="sales"), 1.0)
    frames.close()
    sent: list[dict[str, Any]] = []

    class Socket:
        async def send_json(self, data: Any) -> None:
            sent.append(data)

    await frames.run(Socket())
    [frame] = sent
    assert frame["metadata"]["message"] == (
        "call_transfer attempt failed; dialling the next destination (busy) [sales]"
    )
    assert frame["metadata"]["level"] == "info"
