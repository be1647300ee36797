"""Tools hold actions without waiting; the call-scoped sender delivers them, once, in order."""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest
from line.agent import AgentEnv, TurnEnv
from line.events import AgentSendText, AgentTurnEnded, AgentTurnStarted, OutputEvent, UserCustomSent
from line.llm_agent import ToolEnv

from agent import prompt
from agent.action_events import ActionEvent, Delivered
from agent.actions import END_CALL, ActionOutcome, ControlAction
from agent.call_control import CallControl
from agent.call_observer import CallObserver
from agent.control_transport import ControlNetwork, make_control_client
from agent.control_url import parse_control_url
from agent.flush_policy import FlushTimings
from agent.retry_policy import RetryPolicy
from agent.tools import telephony_tools
from agent.voxengine_client import VoxEngineClient
from lab.faults import FaultPlan
from lab.voxengine_emulator import VoxEngineEmulator

pytestmark = pytest.mark.anyio


def control_for(
    emulator: VoxEngineEmulator | None, http: httpx.AsyncClient, timings: FlushTimings | None = None
) -> CallControl:
    client = VoxEngineClient(http, retry=RetryPolicy(deadline_s=2.0, attempt_timeout_s=0.5))
    if emulator is None:
        return CallControl(target=None, refusal="missing", client=client)
    target = parse_control_url(emulator.control_url(), allow_local=True)
    return CallControl(target=target, client=client, timings=timings)


async def run_tool(control: CallControl, name: str, **args: Any) -> list[OutputEvent]:
    [tool] = [t for t in telephony_tools(control) if t.name == name]
    ctx = ToolEnv(turn_env=TurnEnv(AgentEnv()))
    with anyio.fail_after(0.5):  # a tool never sleeps and never waits for VoxEngine
        return [event async for event in tool.func(ctx, **args)]


async def test_tools_speak_and_hold_without_waiting_for_voxengine() -> None:
    async with (
        VoxEngineEmulator(faults=FaultPlan(rates={"hang": 1.0})) as emulator,
        emulator.client() as http,
    ):
        control = control_for(emulator, http)
        said = await run_tool(control, "call_transfer", summary="billing question")
        bye = await run_tool(control, "end_call")
    assert said == [AgentSendText(text=prompt.TRANSFER_CONFIRMATION)]
    assert bye == []  # the goodbye is the LLM's; no AgentEndCall: VoxEngine hangs up first
    assert control.pending == 2
    assert emulator.requests == []  # held, not sent: the confirming turn has not ended


async def test_asking_twice_holds_once_and_confirms_once() -> None:
    async with VoxEngineEmulator() as emulator, emulator.client() as http:
        control = control_for(emulator, http)
        first = await run_tool(control, "call_transfer", summary="a")
        second = await run_tool(control, "call_transfer", summary="b")
        assert await run_tool(control, "end_call") == []
        assert await run_tool(control, "end_call") == []
    assert first == [AgentSendText(text=prompt.TRANSFER_CONFIRMATION)]
    assert second == []
    assert control.pending == 2


async def test_without_a_control_url_the_tools_say_they_cannot() -> None:
    async with make_control_client(ControlNetwork()) as http:
        control = control_for(None, http)
    assert await run_tool(control, "call_transfer") == [AgentSendText(text=prompt.UNAVAILABLE)]
    assert await run_tool(control, "end_call") == [AgentSendText(text=prompt.UNAVAILABLE)]
    assert control.pending == 0


async def test_released_actions_are_delivered_in_the_order_they_were_asked() -> None:
    async with VoxEngineEmulator() as emulator, emulator.client() as http, anyio.create_task_group() as tg:
        control = control_for(emulator, http)
        tg.start_soon(control.run)
        await run_tool(control, "call_transfer")
        await run_tool(control, "end_call")
        control.observe(AgentTurnStarted())
        control.observe(AgentTurnEnded())
        await emulator.wait_for_effects(2, timeout=5)
        control.close()
        with anyio.fail_after(5):
            await control.wait_finished()
    assert [e.action for e in emulator.effects] == ["call_transfer", "end_call"]
    assert [o.status for o in control.outcomes] == ["delivered", "delivered"]
    assert {o.reason for o in control.outcomes} == {"accepted"}


async def test_an_action_nobody_speaks_for_is_sent_after_the_no_speech_deadline() -> None:
    timings = FlushTimings(no_speech_s=0.3, max_hold_s=5.0)
    async with VoxEngineEmulator() as emulator, emulator.client() as http, anyio.create_task_group() as tg:
        control = control_for(emulator, http, timings)
        tg.start_soon(control.run)
        held_at = anyio.current_time()
        control.request(END_CALL)
        [effect] = await emulator.wait_for_effects(1, timeout=5)
        control.close()
    assert anyio.current_time() - held_at >= 0.3
    [outcome] = control.outcomes
    assert outcome.released_at is not None and outcome.released_at - outcome.enqueued_at >= 0.3
    assert effect.action == "end_call"


async def test_closing_the_call_releases_and_drains_everything() -> None:
    async with VoxEngineEmulator() as emulator, emulator.client() as http, anyio.create_task_group() as tg:
        control = control_for(emulator, http)
        tg.start_soon(control.run)
        await run_tool(control, "call_transfer")
        control.observe(AgentTurnStarted())  # still speaking when the socket closes
        control.close()
        with anyio.fail_after(5):
            await control.wait_finished()
    [outcome] = control.outcomes
    assert outcome.status == "delivered"
    assert len(emulator.effects) == 1
    assert control.request(END_CALL).status == "unavailable"


class HangUp(CallObserver):
    """A CallControl's hang-up: when VoxEngine accepted it, and when (and how) it ended the
    agent's side (times on the control plane's clock, `time.perf_counter`)."""

    def __init__(self) -> None:
        self.accepted = anyio.Event()
        self.ended: list[tuple[str, float]] = []
        self.own_side_ended = anyio.Event()
        self.control: CallControl

    def action_event(self, action: ControlAction, event: ActionEvent, at: float) -> None:
        if isinstance(event, Delivered):
            self.accepted.set()

    async def end_own_side(self, outcome: ActionOutcome) -> None:
        self.ended.append((outcome.status, time.perf_counter()))
        self.own_side_ended.set()

    def completed(self, action_id: str, **extra: Any) -> bool:
        metadata = {"vox_event": "action_outcome", "id": action_id, "action": "end_call", **extra}
        metadata["status"] = "completed"
        return self.control.observe(UserCustomSent(metadata=metadata))


def hang_up_control(emulator: VoxEngineEmulator, http: httpx.AsyncClient, grace_s: float) -> HangUp:
    client = VoxEngineClient(http, retry=RetryPolicy(deadline_s=2.0, attempt_timeout_s=0.5))
    target = parse_control_url(emulator.control_url(), allow_local=True)
    hang_up = HangUp()
    hang_up.control = CallControl(
        target=target,
        client=client,
        observer=hang_up,
        end_own_side=hang_up.end_own_side,
        end_call_grace_s=grace_s,
    )
    return hang_up


async def accepted_hang_up(hang_up: HangUp, emulator: VoxEngineEmulator) -> tuple[str, float]:
    """Ask for the hang-up, end its turn, and wait until VoxEngine accepted it."""
    result = hang_up.control.request(END_CALL)
    assert result.action is not None
    hang_up.control.observe(AgentTurnStarted())
    hang_up.control.observe(AgentTurnEnded())
    with anyio.fail_after(5):
        await hang_up.accepted.wait()  # the POST's answer read
    [outcome] = hang_up.control.outcomes
    return result.action.id, outcome.finished_at


async def test_the_agents_side_ends_only_once_voxengine_completed_the_hang_up() -> None:
    async with VoxEngineEmulator() as emulator, emulator.client() as http, anyio.create_task_group() as tg:
        hang_up = hang_up_control(emulator, http, grace_s=30.0)
        tg.start_soon(hang_up.control.run)
        action_id, _ = await accepted_hang_up(hang_up, emulator)
        await anyio.wait_all_tasks_blocked()
        assert hang_up.ended == []  # accepted is not hung up: the goodbye may still be playing there
        completed_at = time.perf_counter()
        assert hang_up.completed(action_id, playout_offset_ms=120) is False  # never starts the agent
        with anyio.fail_after(5):
            await hang_up.own_side_ended.wait()
        hang_up.control.close()
    [(status, at)] = hang_up.ended
    assert status == "delivered" and at >= completed_at


async def test_without_completed_the_agents_side_ends_after_the_grace() -> None:
    async with VoxEngineEmulator() as emulator, emulator.client() as http, anyio.create_task_group() as tg:
        hang_up = hang_up_control(emulator, http, grace_s=0.3)
        tg.start_soon(hang_up.control.run)
        _, accepted_at = await accepted_hang_up(hang_up, emulator)
        with anyio.fail_after(5):  # no caller stranded on an older scenario that never says completed
            await hang_up.own_side_ended.wait()
        hang_up.control.close()
    [(status, at)] = hang_up.ended
    assert status == "delivered" and 0.3 <= at - accepted_at < 3.0


async def test_a_call_the_harness_closed_first_is_not_ended_again() -> None:
    async with VoxEngineEmulator() as emulator, emulator.client() as http, anyio.create_task_group() as tg:
        hang_up = hang_up_control(emulator, http, grace_s=30.0)
        tg.start_soon(hang_up.control.run)
        await accepted_hang_up(hang_up, emulator)
        hang_up.control.close()  # the harness closed the socket while the hang-up was under way
        with anyio.fail_after(5):  # the drain does not sit out the grace
            await hang_up.control.wait_finished()
    assert hang_up.ended == []
