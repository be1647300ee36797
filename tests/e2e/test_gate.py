"""The gate in front of Line's routes, on the real app served on loopback (the call lab): the
per-process call cap and the path secret. (Drain by signal: tests/e2e/test_drain.py; logs of a
real call: tests/e2e/test_public_endpoint.py.)"""

from __future__ import annotations

import dataclasses

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from agent.settings import Settings
from lab.call_lab import CallLab
from lab.harness import HarnessSimulator
from lab.scripted_llm import LlmReply
from lab.tts_model import TtsModel

pytestmark = pytest.mark.anyio
SECRET = "lab-path-secret_0123456789"
FAST = TtsModel(first_audio_s=0.02, words_per_s=30)
CHATS_BODY = {"call_id": "c1", "from": "+15550000001", "to": "+15550000002"}


def http_origin(ws_url: str) -> str:
    return ws_url.replace("ws://", "http://", 1).rsplit("/", 1)[0]


async def refused_status(ws_url: str) -> int:
    """The HTTP status that refused a websocket upgrade to `ws_url` (fails if it was accepted)."""
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(ws_url, open_timeout=5):
            pass
    return refused.value.response.status_code


async def test_beyond_the_cap_a_new_call_is_refused_with_503_before_any_call_work() -> None:
    settings = dataclasses.replace(Settings(), max_calls=1)
    async with CallLab([LlmReply(text="Nine to five.")], settings=settings) as lab:
        assert lab.app is not None
        origin = http_origin(lab.ws_url)
        async with lab.call(tts=FAST) as sim, httpx.AsyncClient(base_url=origin) as http:
            await sim.wait_agent_turn_end(1, timeout_s=30)
            assert await refused_status(lab.ws_url) == 503
            chats = await http.post("/chats", json=CHATS_BODY)
            assert chats.status_code == 503 and chats.json() == {"detail": "at capacity"}
            assert chats.headers["retry-after"] == "1"
            assert (await http.get("/status")).status_code == 200  # full is not unhealthy
            # The refused call never reached Line: no call was started, the LLM was not asked.
            assert len(lab.recorder.calls) == 1 and lab.llm.requests == []
            await sim.user_says("What are your hours?")
            assert (await sim.wait_agent_turn_end(2, timeout_s=30)).text == "Nine to five."
        with anyio.fail_after(10):
            await lab.app.admission.wait_idle()  # the slot is free once the call has drained
        async with lab.call(tts=FAST, session="s2") as again:
            await again.wait_agent_turn_end(1, timeout_s=30)
        assert len(lab.recorder.calls) == 2


async def test_a_path_secret_moves_lines_routes_and_leaves_status_and_livez_open() -> None:
    settings = dataclasses.replace(Settings(), path_secret=SECRET)
    async with CallLab(settings=settings) as lab:
        origin = http_origin(lab.ws_url)
        ws_origin = origin.replace("http://", "ws://", 1)
        async with httpx.AsyncClient(base_url=origin) as http:
            for path in ("/chats", f"/{SECRET}x/chats", f"/{SECRET[:-1]}/chats", f"/x/{SECRET}/chats"):
                assert (await http.post(path, json=CHATS_BODY)).status_code == 404, path
            for path in ("/docs", "/openapi.json", f"/{SECRET}"):
                assert (await http.get(path)).status_code == 404, path
            chats = await http.post(f"/{SECRET}/chats", json=CHATS_BODY)
            assert chats.status_code == 200 and chats.json()["websocket_url"] == f"/{SECRET}/ws"
            assert (await http.get("/status")).json()["status"] == "ok"
            livez = await http.get("/livez")
            assert livez.status_code == 200 and livez.json() == {"status": "alive", "draining": False}
        assert await refused_status(f"{ws_origin}/ws") == 404
        assert await refused_status(f"{ws_origin}/wrong-secret-0123456789/ws") == 404
        lab.ws_url = ws_origin + chats.json()["websocket_url"]  # as Cartesia follows the answer
        async with lab.call(tts=FAST) as sim:
            first = await sim.wait_agent_turn_end(1, timeout_s=30)
        assert first.text and len(lab.recorder.calls) == 1


async def test_the_caller_and_callee_come_from_metadata_from_and_to_when_the_top_level_is_a_default() -> None:
    async with CallLab() as lab:
        metadata = {
            "vox_session_control_url": lab.emulator.control_url(),
            "from": "+15551230001",
            "to": "+15551230002",
            "caller": "+19990000000",  # the old spelling loses to the documented one
        }
        async with HarnessSimulator.connect(
            lab.ws_url, metadata=metadata, tts=FAST, call_id="meta", from_="websocket", to="sim-agent"
        ) as sim:
            await sim.wait_agent_turn_end(1, timeout_s=30)
        info = lab.recorder.calls["meta"]
        assert (info.caller, info.callee) == ("+15551230001", "+15551230002")
