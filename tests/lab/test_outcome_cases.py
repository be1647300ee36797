"""The shared transfer outcome cases (voxengine/contract/outcome_cases.json) replayed against the
lab's VoxEngine emulator, in real time, as voxengine/contract/README.md "How to replay the outcome
cases" says; the Node tests replay the same file against the scenario."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from lab.control_host import lab_client
from lab.telephony import TransferScript
from lab.voxengine_emulator import AgentLink, VoxEngineEmulator

pytestmark = pytest.mark.anyio

CASES_PATH = Path(__file__).resolve().parents[2] / "voxengine" / "contract" / "outcome_cases.json"
CASES: list[dict[str, Any]] = json.loads(CASES_PATH.read_text(encoding="utf-8"))["cases"]
SESSION_EVENTS = ("caller_hangs_up", "end_call", "agent_gone")  # the rest is the target's leg


async def post(client: Any, url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(url, json=body, headers={"x-idempotency-key": body["id"]})
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_outcome_case(case: dict[str, Any]) -> None:
    sent: list[dict[str, Any]] = []
    closed = anyio.Event()

    async def custom(metadata: dict[str, Any]) -> None:
        assert not closed.is_set(), "a custom event after the agent's websocket closed"
        sent.append(metadata)

    async def close() -> None:
        closed.set()

    script = TransferScript.from_case(case)
    last = max((step["at_ms"] for step in case["script"]), default=0)
    until = case.get("until_ms", last + 600) / 1000
    async with VoxEngineEmulator(transfer=script) as emu, lab_client() as client:
        emu.link_agent("s1", AgentLink(custom=custom, close=close))
        url = emu.control_url("s1")
        start = anyio.current_time()
        body = {"id": "transfer-1", "action": "call_transfer", "summary": case["summary"]}
        assert (await post(client, url, body))["ok"] is True
        for step in case["script"]:
            if step["event"] not in SESSION_EVENTS:
                continue  # played by the emulator's transfer leg itself
            await anyio.sleep_until(start + step["at_ms"] / 1000)
            if step["event"] == "caller_hangs_up":
                emu.hang_up("s1")
            elif step["event"] == "agent_gone":
                emu.agent_gone("s1")
                closed.set()
            else:
                end = {"id": "end-1", "action": "end_call"}
                assert (await post(client, url, end))["ok"] is True
        await anyio.sleep_until(start + until)
        [play] = emu.transfers
        session_ended = emu.session_ended("s1")

    expect = case["expect"]
    # An end_call in the script is completed to the agent too (the hang-up chain); the cases
    # describe the transfer's outcomes.
    others = [m for m in sent if m.get("id") != "transfer-1"]
    assert all((m["id"], m["action"], m["status"]) == ("end-1", "end_call", "completed") for m in others)
    sent = [m for m in sent if m.get("id") == "transfer-1"]
    assert len(sent) == len(expect["outcomes"]), sent
    for got, want in zip(sent, expect["outcomes"], strict=True):
        assert {k: got.get(k) for k in want} == want, got
        assert (got["vox_event"], got["id"], got["action"]) == (
            "action_outcome",
            "transfer-1",
            "call_transfer",
        )
    assert play.whisper == expect["whisper"]
    assert play.caller_with == expect["caller_with"]
    assert session_ended == expect["session_ended"]
