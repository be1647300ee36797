"""The admission of calls: the cap counts open calls, a drain refuses every new one, and waiting
for idle returns exactly when the last call ends."""

from __future__ import annotations

import anyio
import pytest

from agent.admission import Admission

pytestmark = pytest.mark.anyio


def test_the_cap_refuses_only_beyond_max_calls_and_a_released_slot_is_free_again() -> None:
    admission = Admission(max_calls=2)
    with admission.call():
        assert admission.refusal() is None
        with admission.call():
            assert admission.active == 2 and admission.refusal() == "at capacity"
        assert admission.refusal() is None
    assert admission.active == 0


def test_no_cap_and_a_drain_that_refuses_everything_new() -> None:
    admission = Admission(max_calls=None)
    for _ in range(100):
        admission.active += 1  # as 100 open calls
    assert admission.refusal() is None
    admission.begin_drain()
    assert admission.refusal() == "draining"
    assert Admission(max_calls=5).refusal() is None


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Admission(max_calls=0)


async def test_wait_idle_returns_when_the_last_call_ends_not_before() -> None:
    admission = Admission(max_calls=None)
    ended: list[str] = []
    first, second = anyio.Event(), anyio.Event()

    async def call(name: str, end: anyio.Event) -> None:
        with admission.call():
            await end.wait()
            ended.append(name)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "a", first)
            tg.start_soon(call, "b", second)
            await anyio.wait_all_tasks_blocked()
            assert admission.active == 2
            admission.begin_drain()

            async def wait() -> None:
                await admission.wait_idle()
                ended.append("idle")

            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            first.set()
            await anyio.wait_all_tasks_blocked()
            assert ended == ["a"]  # one call still open: still waiting
            second.set()
    assert ended == ["a", "b", "idle"]
    with anyio.fail_after(1):
        await admission.wait_idle()  # nothing open: at once
