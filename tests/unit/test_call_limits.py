"""Silence and time limits (agent/call_limits.py, issue #18): read and checked at start-up, fired
in order from the end of the last speech, the check-in never restarting the silence, a caller's
word restarting it, nothing more once a hang-up is held."""

from __future__ import annotations

import time

import anyio
import httpx
import pytest
from line.events import (
    AgentEndCall,
    AgentSendText,
    AgentTurnEnded,
    AgentTurnStarted,
    UserDtmfSent,
    UserTurnEnded,
    UserTurnStarted,
)

from agent import prompt
from agent.call_control import CallControl
from agent.call_limits import CallLimits, LimitTimings
from agent.settings import Settings, SettingsError
from agent.voxengine_client import VoxEngineClient

pytestmark = pytest.mark.anyio
KEY = {"OPENAI_API_KEY": "sk-test"}


def test_limits_are_off_unless_set_and_read_when_set() -> None:
    assert not Settings.from_env(KEY).limits.on
    env = {**KEY, "VOX_SILENCE_PROMPT_S": "10", "VOX_SILENCE_HANGUP_S": "25", "VOX_MAX_CALL_S": "1800"}
    assert Settings.from_env(env).limits == LimitTimings(10.0, 25.0, 1800.0)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"VOX_SILENCE_PROMPT_S": "soon"}, "VOX_SILENCE_PROMPT_S must be a number of seconds"),
        ({"VOX_SILENCE_HANGUP_S": "-5"}, "VOX_SILENCE_HANGUP_S must be a positive number"),
        (
            {"VOX_SILENCE_PROMPT_S": "20", "VOX_SILENCE_HANGUP_S": "20"},
            "must be longer than VOX_SILENCE_PROMPT_S",
        ),
        ({"VOX_MAX_CALL_S": "30"}, "VOX_MAX_CALL_S (30) must be over 40 s"),
    ],
)
def test_a_bad_limit_is_one_clear_error(env: dict[str, str], says: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({**KEY, **env})
    assert says in str(err.value)


class Fired(list[tuple[str, float]]):
    """Each limit fired, and when; `wait_fired` for the n-th."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = anyio.Event()

    def __call__(self, kind: str) -> None:
        self.append((kind, time.perf_counter()))
        self.changed.set()
        self.changed = anyio.Event()


def limits(timings: LimitTimings) -> tuple[CallLimits, Fired]:
    fired = Fired()
    control = CallControl(target=None, client=VoxEngineClient(httpx.AsyncClient()))
    return CallLimits(timings, control, fired), fired


async def wait_fired(fired: Fired, n: int) -> None:
    with anyio.fail_after(5):
        while len(fired) < n:
            await fired.changed.wait()


async def test_the_check_in_then_the_goodbye_counted_from_the_last_speech() -> None:
    call, fired = limits(LimitTimings(silence_prompt_s=0.2, silence_hangup_s=0.6))
    async with anyio.create_task_group() as tg:
        tg.start_soon(call.run)
        call.observe(AgentTurnStarted())
        call.observe(AgentTurnEnded())  # the introduction ends: silence starts
        spoke = time.perf_counter()
        await wait_fired(fired, 1)
        call.observe(AgentTurnStarted())  # the check-in is said ...
        call.observe(AgentTurnEnded())  # ... and does not restart the silence
        await wait_fired(fired, 2)
        tg.cancel_scope.cancel()
    [(prompt_kind, prompted), (goodbye_kind, goodbye)] = fired
    assert (prompt_kind, goodbye_kind) == ("silence_prompt", "silence_hangup")
    assert 0.2 <= prompted - spoke < 0.5 and 0.6 <= goodbye - spoke < 0.9


async def test_the_caller_speaking_or_pressing_a_key_restarts_the_silence() -> None:
    call, fired = limits(LimitTimings(silence_prompt_s=0.3))
    async with anyio.create_task_group() as tg:
        tg.start_soon(call.run)
        call.observe(AgentTurnEnded())
        await anyio.sleep(0.2)
        call.observe(UserDtmfSent(button="1"))
        await anyio.sleep(0.2)
        call.observe(UserTurnStarted())  # nothing fires while someone speaks
        await anyio.sleep(0.4)
        assert fired == []
        call.observe(UserTurnEnded())
        spoke = time.perf_counter()
        await wait_fired(fired, 1)
        tg.cancel_scope.cancel()
    assert fired[0][0] == "silence_prompt" and fired[0][1] - spoke >= 0.3


async def test_the_time_limit_closes_a_margin_before_it_and_waits_for_speech_to_end() -> None:
    call, fired = limits(LimitTimings(max_call_s=1.0, close_margin_s=0.6))  # close at 0.4 s
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(call.run)
        call.observe(AgentTurnStarted())  # still speaking at 0.4 s
        await anyio.sleep(0.5)
        assert fired == []
        call.observe(AgentTurnEnded())
        await wait_fired(fired, 1)
        await anyio.sleep(0.3)
        tg.cancel_scope.cancel()
    [(kind, at)] = fired  # once: a close ends the limits
    assert kind == "max_call" and 0.5 <= at - started < 0.7


async def test_without_a_control_plane_the_goodbye_ends_the_call_through_line() -> None:
    call, _ = limits(LimitTimings(silence_hangup_s=1.0))
    said = [output async for output in call.turn("silence_hangup")]
    assert said == [AgentSendText(text=prompt.SILENCE_GOODBYE), AgentEndCall()]
    assert [o async for o in call.turn("silence_prompt")] == [AgentSendText(text=prompt.SILENCE_CHECK_IN)]
