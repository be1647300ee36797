"""A public endpoint as users run it (`python main.py` in its own process, everything it logs
captured): with `AGENT_PATH_SECRET` and `AGENT_MAX_CALLS`, real calls go through the secret path;
neither the secret nor the start message's `agent_token` appears anywhere in the output (Line's
"Received start message" line, uvicorn's access log, ours)."""

from __future__ import annotations

import json
import signal
import sys

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from lab.harness import HarnessSimulator, start_message
from lab.scripted_llm import ScriptedLlm
from lab.tts_model import TtsModel
from lab.voxengine_emulator import VoxEngineEmulator
from tests.server_process import free_port, running_server, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # real server processes
SECRET = "Zq8-path_secret.of~the-test-0042"
AGENT_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJhZ2VudCI6InRlc3QifQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
TTS = TtsModel(first_audio_s=0.05, words_per_s=20)


async def test_calls_go_through_the_secret_path_and_no_secret_reaches_the_logs() -> None:
    port = free_port()
    async with ScriptedLlm([]) as llm, VoxEngineEmulator() as emulator:
        env = server_env(
            llm.api_base,
            HOST="127.0.0.1",
            PORT=str(port),
            AGENT_PATH_SECRET=SECRET,
            AGENT_MAX_CALLS="1",
            **emulator.env(),
        )
        origin = f"127.0.0.1:{port}"
        async with (
            running_server([sys.executable, "main.py"], env, port) as (proc, log),
            httpx.AsyncClient(base_url=f"http://{origin}") as http,
        ):
            assert (await http.post("/chats", json={"call_id": "c"})).status_code == 404
            chats = await http.post(f"/{SECRET}/chats", json={"call_id": "c"})
            ws_url = f"ws://{origin}{chats.json()['websocket_url']}"
            assert ws_url == f"ws://{origin}/{SECRET}/ws"
            assert (await http.get("/status")).status_code == 200
            # A call from a harness that forwards the agent's token, as Cartesia's does.
            start = {
                **start_message(metadata=emulator.start_metadata(), call_id="tok"),
                "agent_token": AGENT_TOKEN,
            }
            async with ws_connect(ws_url, open_timeout=5) as ws:
                await ws.send(json.dumps(start))
                with anyio.fail_after(30):
                    first = json.loads(await ws.recv())  # the agent answered: the call is live
                # The one slot is taken: the next call is refused before it is accepted.
                with pytest.raises(InvalidStatus) as refused:
                    async with ws_connect(ws_url, open_timeout=5):
                        pass
                assert refused.value.response.status_code == 503
            with anyio.fail_after(15):  # the first call's slot frees once its server side has drained
                while (await http.post(f"/{SECRET}/chats", json={"call_id": "d"})).status_code == 503:  # noqa: ASYNC110
                    await anyio.sleep(0.05)  # another process's state: polling is the only signal there is
            async with HarnessSimulator.connect(
                ws_url, metadata=emulator.start_metadata("s2"), tts=TTS, call_id="second"
            ) as sim:
                await sim.wait_agent_turn_end(1, timeout_s=30)
            proc.send_signal(signal.SIGTERM)
    output = log.decode(errors="replace")
    assert first["type"]
    assert proc.returncode in (0, -signal.SIGTERM), output[-3000:]
    assert output.count("Received start message") == 2  # Line logged both start messages...
    assert "'agent_token': 'REDACTED'" in output  # ...with the token's value cut out
    assert AGENT_TOKEN not in output and AGENT_TOKEN.split(".")[2] not in output
    assert SECRET not in output
    assert '"POST /chats HTTP/1.1" 200' in output  # uvicorn's access log shows the route, not the secret
    assert "AGENT_PATH_SECRET is not set" not in output
