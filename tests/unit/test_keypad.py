"""The caller's keypad (agent/keypad.py, issue #18): keys gather into one entry, ended by `#`, a
pause or the caller's spoken turn; the entry reaches the LLM as the caller's text where it was
typed, on that turn and every later one; its digits reach no log."""

from __future__ import annotations

import anyio
import pytest
from line.events import AgentTextSent, InputEvent, UserCustomSent, UserDtmfSent, UserTextSent, UserTurnEnded
from loguru import logger

from agent import prompt
from agent.keypad import Keypad

pytestmark = pytest.mark.anyio


def with_history(event: InputEvent, history: list[InputEvent]) -> InputEvent:
    return event.model_copy(update={"history": [*history, event]})


def test_hash_ends_an_entry_which_becomes_the_callers_turn_now_and_later() -> None:
    pad = Keypad(lambda kind: None)
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), format="{message}")
    try:
        past: list[InputEvent] = [AgentTextSent(content="Your account number?")]
        keys = [UserDtmfSent(button=b) for b in "4711"]
        assert [pad.observe(k) for k in keys] == [False] * 4
        end = UserDtmfSent(button="#")
        assert pad.observe(end) is True  # the agent starts on it
        history = [*past, *keys]
        seen = pad.rewrite(with_history(end, history), ends_entry=True)
    finally:
        logger.remove(sink)
    note = prompt.keypad_note("4711#")
    assert isinstance(seen, UserTurnEnded) and seen.event_id == end.event_id
    assert [c.content for c in seen.content] == [note]
    assert seen.history is not None and isinstance(seen.history[-2], UserTextSent)
    assert seen.history[-2].content == note and seen.history[-1].event_id == end.event_id
    assert lines == ["keypad: an entry of 5 keys from the caller\n"]  # never the keys
    # A later turn still carries the entry, where it was typed.
    later = UserTurnEnded(content=[UserTextSent(content="thanks")])
    after = pad.rewrite(with_history(later, [*history, end, UserTextSent(content="thanks")]))
    texts = [e.content for e in after.history or [] if isinstance(e, UserTextSent)]
    assert texts == [note, "thanks"] and after.event_id == later.event_id


def test_keys_pending_when_the_caller_speaks_join_that_turn() -> None:
    pad = Keypad(lambda kind: None)
    pad.observe(UserDtmfSent(button="7"))
    spoken = UserTurnEnded(content=[UserTextSent(content="that's my choice")])
    seen = pad.rewrite(with_history(spoken, []))
    assert isinstance(seen, UserTurnEnded) and not pad.pending
    assert [c.content for c in seen.content] == ["that's my choice", prompt.keypad_note("7")]


def test_an_event_that_ends_no_entry_is_left_alone() -> None:
    pad = Keypad(lambda kind: None)
    event = UserCustomSent(metadata={"vox_event": "action_outcome"})
    assert pad.rewrite(event) is event  # no entry yet: not even copied
    pad.observe(UserDtmfSent(button="1"))
    assert pad.rewrite(event) is event and pad.pending  # a transfer's setback does not take keys


async def test_a_pause_ends_the_entry_through_an_injected_turn() -> None:
    started: list[str] = []
    ended = anyio.Event()

    def start(kind: str) -> None:
        started.append(kind)
        ended.set()

    pad = Keypad(start, idle_s=0.2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pad.run)
        pad.observe(UserDtmfSent(button="3"))
        await anyio.sleep(0.1)
        pad.observe(UserDtmfSent(button="2"))  # the pause restarts with each key
        await anyio.sleep(0.15)
        assert started == []
        with anyio.fail_after(2):
            await ended.wait()
        tg.cancel_scope.cancel()
    assert started == ["keypad"] and pad.pending  # the keys wait for that turn to take them
