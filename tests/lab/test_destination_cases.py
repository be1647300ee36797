"""The shared destination cases (voxengine/contract/destination_cases.json) replayed against the
lab's VoxEngine emulator, in real time, as voxengine/contract/README.md "Destination cases" says;
voxengine/tests/destination_replay.js replays the same file against the scenario."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from lab.control_host import lab_client
from lab.telephony import (
    CONTRACT_PACE,
    DEFAULT_DESTINATION,
    Destination,
    TransferScript,
    TransferSettings,
    parse_destinations,
    script_for,
)
from lab.voxengine_emulator import AgentLink, VoxEngineEmulator

# Every case plays at real pace (up to 2.6 s each; the file takes well over 20 s).
pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CASES_PATH = Path(__file__).resolve().parents[2] / "voxengine" / "contract" / "destination_cases.json"
CASES: list[dict[str, Any]] = json.loads(CASES_PATH.read_text(encoding="utf-8"))["cases"]
DEFAULT_TAIL_MS = 600
# A case's settings → TransferSettings fields (max_call_s is the emulator's own MAX_CALL_S).
SETTINGS = ("ring_timeout_s", "whisper", "whisper_timeout_s", "amd", "amd_timeout_s")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def emulator_for(case: dict[str, Any]) -> VoxEngineEmulator:
    """The emulator with the case's ApplicationStorage and its phones' behaviours, at the
    contract's times (CONTRACT_PACE). Unset settings are the scenario's defaults, AMD on."""
    given = case.get("settings", {})
    settings = TransferSettings(**{"amd": True, **{k: v for k, v in given.items() if k in SETTINGS}})
    behaviours = case.get("behaviours", {})
    raw = case.get("destinations")
    destinations = None
    if raw is not None:
        destinations = parse_destinations(raw if isinstance(raw, str) else json.dumps(raw), behaviours)
    legacy: TransferScript | None = None
    number = case.get("transfer_number")
    if number is not None:  # TRANSFER_NUMBER, dialled as "default" unless TRANSFER_DESTINATIONS has one
        legacy_phone = Destination(DEFAULT_DESTINATION, behaviours.get(DEFAULT_DESTINATION, "silent"))
        legacy = script_for(legacy_phone, CONTRACT_PACE, settings=settings)
    return VoxEngineEmulator(
        transfer=legacy,
        destinations=destinations,
        pace=CONTRACT_PACE,
        settings=settings,
        transfer_number=number,
        max_call_s=given.get("max_call_s"),
    )


def subset_problems(i: int, got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    problems = []
    for key, value in want.items():
        if key == "absent":
            problems += [f"outcomes[{i}].{k} should be absent: {got}" for k in value if k in got]
        elif got.get(key) != value:
            problems.append(f"outcomes[{i}].{key}: expected {value!r}, got {got}")
    return problems


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_destination_case(case: dict[str, Any]) -> None:
    sent: list[dict[str, Any]] = []
    keys_to_agent: list[str] = []
    closed = anyio.Event()

    async def custom(metadata: dict[str, Any]) -> None:
        assert not closed.is_set(), "a custom event after the agent's websocket closed"
        sent.append(metadata)

    async def dtmf(key: str) -> None:
        keys_to_agent.append(key)

    async def close() -> None:
        closed.set()

    last = max((step["at_ms"] for step in case["script"]), default=0)
    until = case.get("until_ms", last + DEFAULT_TAIL_MS) / 1000
    response: dict[str, Any] | None = None
    async with emulator_for(case) as emu, lab_client() as client:

        async def post(body: dict[str, Any]) -> dict[str, Any]:
            answer = await client.post(url, json=body, headers={"x-idempotency-key": body["id"]})
            assert answer.status_code == 200
            result: dict[str, Any] = answer.json()
            return result

        emu.link_agent("s1", AgentLink(custom=custom, close=close, dtmf=dtmf))
        url = emu.control_url("s1")
        start = anyio.current_time()
        if case["request"] is not None:
            request = {"id": "transfer-1", "action": "call_transfer", "summary": case["summary"]}
            response = await post({**request, **case["request"]})
        for step in case["script"]:
            await anyio.sleep_until(start + step["at_ms"] / 1000)
            event = step["event"]
            if event == "caller_tone":
                await emu.caller_presses(step["tone"])
            elif event == "agent_dtmf":
                emu.agent_dtmf(step["digits"])
            elif event == "caller_hangs_up":
                emu.hang_up("s1")
            elif event == "agent_gone":
                emu.agent_gone("s1")
                closed.set()
            else:
                assert event == "end_call", event
                assert (await post({"id": "end-1", "action": "end_call"}))["ok"] is True
        await anyio.sleep_until(start + until)
        caller_with = emu.caller_with("s1")
        session_ended = emu.session_ended("s1")

    expect = case["expect"]
    if case["request"] is not None:
        wanted = expect.get("response", {"ok": True})
        assert response is not None and {k: response.get(k) for k in wanted} == wanted, response
    assert [{"to": d.to, "caller_id": d.caller_id} for d in emu.dials] == expect["dialled"]
    # An end_call in the script is completed to the agent too (the hang-up chain).
    others = [m for m in sent if m.get("id") != "transfer-1"]
    assert all((m["id"], m["action"], m["status"]) == ("end-1", "end_call", "completed") for m in others)
    outcomes = [m for m in sent if m.get("id") == "transfer-1"]
    assert len(outcomes) == len(expect["outcomes"]), outcomes
    problems = [
        p
        for i, pair in enumerate(zip(outcomes, expect["outcomes"], strict=True))
        for p in subset_problems(i, *pair)
    ]
    assert not problems, problems
    assert all((m["vox_event"], m["action"]) == ("action_outcome", "call_transfer") for m in outcomes)
    whispers = [play.whisper for play in emu.transfers if play.whisper is not None]
    assert len(whispers) <= 1, whispers
    assert (whispers[0] if whispers else None) == expect["whisper"]
    if "digits" in expect:
        assert [{"leg": t.leg, "digits": t.key} for t in emu.tones] == expect["digits"]
    if "keys_to_agent" in expect:
        assert keys_to_agent == expect["keys_to_agent"]
    assert caller_with == expect["caller_with"]
    assert session_ended == expect["session_ended"]
    # No target leg is left up unless the caller is with it.
    assert all(play.over.is_set() for play in emu.transfers)
