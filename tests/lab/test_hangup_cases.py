"""The shared hang-up cases (voxengine/contract/hangup_cases.json) replayed against the lab's
VoxEngine emulator in real time, as voxengine/contract/README.md "Hang-up cases" says (the
hang-up up to 150 ms late, an offset within ±150 ms); the Node tests replay the same file
against the scenario, so the two cannot drift."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from lab.control_host import lab_client
from lab.voxengine_emulator import AgentLink, PlayoutGuard, VoxEngineEmulator

pytestmark = pytest.mark.anyio

CASES_PATH = Path(__file__).resolve().parents[2] / "voxengine" / "contract" / "hangup_cases.json"
CASES: list[dict[str, Any]] = json.loads(CASES_PATH.read_text(encoding="utf-8"))["cases"]
LATE_S = 0.15
_LOGGED = re.compile(r"end_call end-1 completed playout_offset_ms=(-?\d+|null)")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def close_enough(got: Any, want: Any) -> bool:
    if isinstance(want, int) and not isinstance(want, bool):
        return isinstance(got, int) and abs(got - want) <= LATE_S * 1000
    return bool(got == want)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_hangup_case(case: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lab.voxengine_emulator")
    sent: list[dict[str, Any]] = []

    async def custom(metadata: dict[str, Any]) -> None:
        sent.append(metadata)

    async def close() -> None:
        pass

    settings = case.get("settings", {})
    guard = PlayoutGuard(
        on=settings.get("playout_guard", True), max_s=settings.get("playout_guard_max_s", 3.0)
    )
    async with VoxEngineEmulator(guard=guard) as emu, lab_client() as client:
        emu.link_agent("s1", AgentLink(custom=custom, close=close))
        url = emu.control_url("s1")
        start = time.perf_counter()
        began = anyio.current_time()
        for step in case["script"]:
            await anyio.sleep_until(began + step["at_ms"] / 1000)
            event = step["event"]
            if event == "audio_starts":
                emu.agent_audio("s1", started_at=time.perf_counter())
            elif event == "audio_stops":
                emu.agent_audio("s1", stopped_at=time.perf_counter())
            elif event == "agent_closes":
                emu.agent_closed("s1", step["code"])
            elif event == "caller_hangs_up":
                emu.hang_up("s1")
            else:
                body = {"id": "end-1", "action": "end_call"}
                answer = await client.post(url, json=body, headers={"x-idempotency-key": "end-1"})
                assert answer.json()["ok"] is True
        await anyio.sleep_until(began + case["until_ms"] / 1000)
        hang_ups = list(emu.hang_ups)

    expect = case["expect"]
    if expect["hangup_at_ms"] is None:
        assert hang_ups == []
    else:
        [hang_up] = hang_ups
        at_ms = (hang_up.time - start) * 1000
        assert expect["hangup_at_ms"] - 20 <= at_ms <= expect["hangup_at_ms"] + LATE_S * 1000, at_ms
    assert len(sent) == len(expect["outcomes"]), sent
    for got, want in zip(sent, expect["outcomes"], strict=True):
        assert (got["vox_event"], got["id"]) == ("action_outcome", "end-1")
        assert all(close_enough(got.get(k), v) for k, v in want.items()), (got, want)
    logged = [m.group(1) for m in map(_LOGGED.search, caplog.messages) if m]
    if "end_call_offset_ms" not in expect:
        assert logged == []
    else:
        [line] = logged
        want = expect["end_call_offset_ms"]
        assert close_enough(None if line == "null" else int(line), want), (line, want)
