"""The real call chain in the lab (lab/chain.py): what the caller hears of the goodbye, against
VoxEngine's media buffer (lab/media_buffer.py). Key rows of `python -m lab chain`."""

from __future__ import annotations

import pytest

from lab.chain import GOODBYE, ChainCase, play_all

pytestmark = pytest.mark.anyio

WORDS_PER_S = 4.0
GOODBYE_MS = len(GOODBYE.split()) / WORDS_PER_S * 1000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_lagging_voxengine_and_a_harness_that_closes_at_once_never_cut_the_new_chains_goodbye() -> (
    None
):
    new_on, new_off, old = await play_all(
        [
            ChainCase(400, "immediately", guard=True),
            ChainCase(400, "immediately", guard=False),
            ChainCase(400, "immediately", guard=False, agent="old"),
        ],
        parallel=3,
        words_per_s=WORDS_PER_S,
    )
    # New chain, guard on: the hang-up waits for the audio's end at VoxEngine; nothing is cut.
    assert new_on.hung_up_by == "end_call" and new_on.cut_ms == 0
    assert new_on.silence_ms is not None and 900 <= new_on.silence_ms <= 1600  # the 1 s rule
    assert new_on.reported_offset_ms is not None and abs(new_on.reported_offset_ms - new_on.silence_ms) < 50
    # Guard off: the hang-up comes at the POST, while the lagging buffer still plays.
    assert new_off.cut_ms is not None and 250 <= new_off.cut_ms <= 450
    assert new_off.reported_offset_ms is None  # VoxEngine could not know: null, never a guess
    # Before #17: end_call at the tool call, the harness closes, the scenario hangs up at once.
    assert old.hung_up_by == "agent_lost" and old.cut_ms is not None and old.cut_ms >= GOODBYE_MS - 50


async def test_without_lag_the_guard_costs_the_second_of_silence_the_media_ended_event_needs() -> None:
    on, off = await play_all(
        [ChainCase(0, "after_speech", guard=True), ChainCase(0, "after_speech", guard=False)],
        parallel=2,
        words_per_s=WORDS_PER_S,
    )
    assert on.cut_ms == 0 and on.silence_ms is not None and 900 <= on.silence_ms <= 1600
    assert off.cut_ms == 0 and off.silence_ms is not None and off.silence_ms < 300
