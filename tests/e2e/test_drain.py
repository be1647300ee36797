"""SIGTERM drains without dropping a call, in its own process as users run it (`python main.py`,
its `WEB_CONCURRENCY` workers, `uvicorn main:app`): new calls are refused at once, `/status` says
503 and `/livez` 200, a live call goes on (the agent answers its next turn) and the process exits
when that call ends, not before; a second SIGTERM exits at once. (The drain timeout closing calls
still open and flushing their held actions: tests/hardening/test_shutdown.py.)"""

from __future__ import annotations

import signal
import sys

import anyio
import httpx
import pytest
from anyio.abc import Process
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from lab.harness import HarnessSimulator
from lab.scripted_llm import LlmReply, ScriptedLlm
from lab.timeline import now
from lab.tts_model import TtsModel
from lab.voxengine_emulator import VoxEngineEmulator
from tests.server_process import free_port, running_server, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # real server processes
HOURS = LlmReply(text="We are open from nine to five.", when_user_says="hours")
TTS = TtsModel(first_audio_s=0.05, words_per_s=8)
EXIT_AT_ONCE_S = 3.0  # as tests/e2e/test_server_process.py: interpreter teardown on a loaded machine

MODES = {
    "python main.py": ([sys.executable, "main.py"], {}),
    "WEB_CONCURRENCY=2": ([sys.executable, "main.py"], {"WEB_CONCURRENCY": "2"}),
    "uvicorn main:app": ([sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port"], {}),
}


def command(mode: str, port: int) -> tuple[list[str], dict[str, str]]:
    cmd, env = MODES[mode]
    return ([*cmd, str(port)] if cmd[-1] == "--port" else cmd), env


async def wait_draining(http: httpx.AsyncClient, proc: Process) -> None:
    """Until `/status` answers 503 (every worker of the process has begun its drain)."""
    with anyio.fail_after(15):
        while True:
            assert proc.returncode is None, "the server exited instead of draining"
            if (await http.get("/status")).status_code == 503:
                return
            await anyio.sleep(0.05)  # another process's state: polling is the only signal there is


async def refused_status(ws_url: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(ws_url, open_timeout=5):
            pass
    return refused.value.response.status_code


@pytest.mark.parametrize("mode", list(MODES))
async def test_a_live_call_goes_on_after_sigterm_and_the_process_exits_when_it_ends(mode: str) -> None:
    port = free_port()
    cmd, extra = command(mode, port)
    async with ScriptedLlm([HOURS]) as llm, VoxEngineEmulator() as emulator:
        env = server_env(llm.api_base, HOST="127.0.0.1", PORT=str(port), **extra, **emulator.env())
        base = f"http://127.0.0.1:{port}"
        async with (
            running_server(cmd, env, port) as (proc, log),
            httpx.AsyncClient(base_url=base) as http,
        ):
            ws_url = f"ws://127.0.0.1:{port}/ws"
            async with HarnessSimulator.connect(ws_url, metadata=emulator.start_metadata(), tts=TTS) as sim:
                await sim.wait_agent_turn_end(1, timeout_s=30)
                proc.send_signal(signal.SIGTERM)
                await wait_draining(http, proc)
                livez = await http.get("/livez")
                assert livez.status_code == 200 and livez.json()["draining"] is True
                assert await refused_status(ws_url) == 503  # a new call: elsewhere
                assert (await http.post("/chats", json={"call_id": "late"})).status_code == 503
                # The live call goes on: the caller asks, the agent answers.
                await sim.user_says("What are your hours?")
                answer = await sim.wait_agent_turn_end(2, timeout_s=30)
                assert proc.returncode is None and not sim.closed
                hung_up_at = now()
                await sim.hang_up()
            with anyio.fail_after(20):
                await proc.wait()
            exited_at = now()
    output = log.decode(errors="replace")
    assert answer.text == HOURS.text
    assert proc.returncode in (0, -signal.SIGTERM), output[-3000:]
    assert exited_at >= hung_up_at
    assert "drain timeout" not in output
    workers = 2 if mode == "WEB_CONCURRENCY=2" else 1
    assert output.count("draining: new calls refused") == workers, output[-3000:]
    assert output.count("drained: no call open") == workers


@pytest.mark.parametrize("mode", ["python main.py", "WEB_CONCURRENCY=2"])
async def test_a_second_sigterm_during_the_drain_exits_at_once(mode: str) -> None:
    port = free_port()
    cmd, extra = command(mode, port)
    async with ScriptedLlm([]) as llm, VoxEngineEmulator() as emulator:
        env = server_env(llm.api_base, HOST="127.0.0.1", PORT=str(port), **extra, **emulator.env())
        async with (
            running_server(cmd, env, port) as (proc, log),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
        ):
            ws_url = f"ws://127.0.0.1:{port}/ws"
            async with HarnessSimulator.connect(ws_url, metadata=emulator.start_metadata(), tts=TTS) as sim:
                await sim.wait_agent_turn_end(1, timeout_s=30)
                proc.send_signal(signal.SIGTERM)
                await wait_draining(http, proc)
                assert not sim.closed  # the call would be waited for: up to 30 minutes
                second = anyio.current_time()
                proc.send_signal(signal.SIGTERM)
                with anyio.fail_after(EXIT_AT_ONCE_S):
                    await proc.wait()
    assert anyio.current_time() - second < EXIT_AT_ONCE_S, log.decode(errors="replace")[-3000:]
