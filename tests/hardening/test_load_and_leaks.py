"""Load and leaks, in one process: 50 concurrent calls, then 200 sequential ones, through the real
app, harness simulator and VoxEngine emulator. After the calls end: no call-scoped task of ours
survives, asyncio tasks and open file descriptors are back to their warmed-up level, traced memory
growth is bounded, `app.live_calls` is empty, and every action has exactly one outcome.

Counts are a fraction of the benchmark's. The agent is `ToolAgent` (see `_support.py`): our real
tools on the real control plane, without LiteLLM, whose per-completion CPU would dominate here
and has nothing to do with what could leak (call scopes, control planes, sockets, tasks).
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections import Counter

import anyio
import pytest

from agent.call_control import CallControl
from agent.conversation import build_llm_agent
from lab.call_lab import CallLab
from lab.scripted_llm import LlmReply, ToolCallSpec
from lab.tts_model import TtsModel
from tests.hardening._support import eventually, open_fds, tool_agent
from tests.product_tasks import product_tasks

pytestmark = pytest.mark.anyio

INSTANT_TTS = TtsModel(first_audio_s=0.005, words_per_s=500)


async def one_call(lab: CallLab, i: int, *, session: str, goodbye: bool) -> None:
    said = "That's all, goodbye." if goodbye else "An operator, please."
    async with lab.call(tts=INSTANT_TTS, session=session, call_id=f"c{i}") as sim:
        await sim.wait_agent_turn_end(1, timeout_s=30)
        await sim.user_says(said, timeout_s=30)
        with anyio.fail_after(30):
            while not lab.recorder.outcomes(f"c{i}"):
                await lab.recorder.changed.wait()
        if goodbye:
            await sim.wait_closed(timeout_s=30)  # the harness hangs up after the goodbye


async def concurrent_round(lab: CallLab, first: int, n: int) -> None:
    async with anyio.create_task_group() as tg:
        for i in range(first, first + n):
            tg.start_soon(lambda i=i: one_call(lab, i, session=f"s{i}", goodbye=i % 2 == 0))
    await lab.wait_calls_ended(first + n, timeout_s=30)


def assert_one_outcome_each(lab: CallLab, expected_actions: int) -> None:
    enqueued = [r.action_id for r in lab.recorder.actions if r.name == "enqueued"]
    outcomes = Counter(r.action_id for r in lab.recorder.outcomes())
    assert len(enqueued) == expected_actions == len(set(enqueued))
    assert set(outcomes) == set(enqueued) and set(outcomes.values()) == {1}
    assert {r.name for r in lab.recorder.outcomes()} == {"delivered"}
    effects = Counter(e.id for e in lab.emulator.effects)
    assert set(effects) == set(enqueued) and set(effects.values()) == {1}


async def settled(lab: CallLab, tasks: int, fds: int, *, slack_fds: int = 0) -> None:
    """Everything the calls opened is gone again (polled: nothing reports these counts)."""
    assert lab.app is not None
    await eventually(lambda: lab.app is not None and not lab.app.live_calls, timeout_s=10, what="live_calls")
    await eventually(lambda: not product_tasks(), timeout_s=10, what="no task of ours left")
    await eventually(lambda: len(asyncio.all_tasks()) <= tasks, timeout_s=10, what=f"<= {tasks} tasks")
    await eventually(lambda: open_fds() <= fds + slack_fds, timeout_s=10, what=f"<= {fds + slack_fds} fds")


async def test_50_concurrent_calls_leave_nothing_behind() -> None:
    calls = 50
    async with CallLab(agent_factory=tool_agent) as lab:
        # A first round warms every pool and cache (keep-alive connections to the emulator stay
        # open by design); the second must not add to what the first left.
        await concurrent_round(lab, 0, calls)
        await settled(lab, tasks=10**6, fds=10**6)
        tasks, fds = len(asyncio.all_tasks()), open_fds()
        await concurrent_round(lab, calls, calls)
        assert_one_outcome_each(lab, 2 * calls)
        # Up to a few more pooled connections than the first round's peak (2 fds each: both
        # ends live in this process); a leak per call would be 50 or more.
        await settled(lab, tasks=tasks + 6, fds=fds, slack_fds=12)
        assert lab.app is not None and lab.app.live_calls == set()
    released = Counter(r.attrs["reason"] for r in lab.recorder.actions if r.name == "released")
    assert set(released) <= {"turn_ended", "call_ended"}, released


@pytest.mark.parametrize("agent", ["tools only", "LlmAgent through LiteLLM"])
async def test_an_ended_call_is_freed_though_timers_it_started_are_still_scheduled(agent: str) -> None:
    # Every task and timer a call starts copies the call's context, and some outlive the call:
    # the POST's retry deadline (cancelled once answered, it stays scheduled until due), and, through
    # LiteLLM's client cache, an aiohttp connector that re-arms its cleanup timer in the context
    # of the call that opened it. Nothing of the call may be reachable from that context.
    transfer = LlmReply(tool_calls=(ToolCallSpec("call_transfer", {"summary": "wants a person"}),))
    factory = tool_agent if agent == "tools only" else build_llm_agent
    async with CallLab([transfer], agent_factory=factory) as lab:
        await one_call(lab, 0, session="s0", goodbye=False)
        await lab.wait_calls_ended(1, timeout_s=10)
        await settled(lab, tasks=10**6, fds=10**6)

        def freed() -> bool:
            gc.collect()  # may schedule asyncio's finalizer task for an unclosed async generator
            return not any(isinstance(o, CallControl) for o in gc.get_objects())

        # Well before the call's own cancelled timers fall due; the connector's never stops.
        await eventually(freed, timeout_s=3, poll_s=0.05, what="the ended call's control plane freed")


@pytest.mark.slow
async def test_200_sequential_calls_grow_no_memory_tasks_or_descriptors() -> None:
    warm_up, calls = 20, 200
    async with CallLab(agent_factory=tool_agent) as lab:
        recorder, emulator = lab.recorder, lab.emulator

        async def play(i: int) -> None:
            # One session for all: the lab keeps no per-call state but what the test clears.
            await one_call(lab, i, session="seq", goodbye=False)
            await lab.wait_calls_ended(1, timeout_s=10)
            assert_one_outcome_each(lab, 1)
            emulator.transfer_failed("seq")  # the scenario may transfer again
            recorder.actions.clear()
            recorder.calls.clear()
            recorder.ended.clear()
            emulator.requests.clear()
            emulator.effects.clear()

        for i in range(warm_up):
            await play(i)
        await settled(lab, tasks=10**6, fds=10**6)
        gc.collect()
        tasks, fds = len(asyncio.all_tasks()), open_fds()
        tracemalloc.start(1)
        try:
            before = tracemalloc.take_snapshot()
            for i in range(warm_up, warm_up + calls):
                await play(i)
            await settled(lab, tasks=tasks, fds=fds)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        assert lab.app is not None and lab.app.live_calls == set()
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")
    growth = sum(s.size_diff for s in stats)
    top = "\n".join(str(s) for s in stats[:15])
    # ~2.5 KB a call at most: the emulator remembers each action id it saw (bounded at 256
    # results per session, plus its per-id attempt counter). A leaked call scope, control plane,
    # agent or websocket costs tens of KB a call.
    assert growth < calls * 2500, f"traced memory grew {growth} bytes over {calls} calls:\n{top}"
