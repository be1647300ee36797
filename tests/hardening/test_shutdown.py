"""Shutdown with several calls in flight: `python main.py` in its own process, three concurrent
calls each holding a transfer mid-confirmation, one SIGTERM. Every held action is flushed (released
by the call's end, delivered once, to its own call's session) within the grace period, and the
process exits. (tests/e2e/test_server_process.py covers one call, and a second SIGTERM.)
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteReceiveStream, Process

from agent import prompt
from agent.lab.harness import HarnessSimulator
from agent.lab.scripted_llm import LlmReply, ScriptedLlm, ToolCallSpec
from agent.lab.timeline import now
from agent.lab.tts_model import TtsModel
from agent.lab.voxengine_emulator import VoxEngineEmulator

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
TOKENS = ("alpha", "bravo", "charlie")
DRAIN_TIMEOUT_S = 8.0  # VOX_DRAIN_TIMEOUT_S
GRACE_S = DRAIN_TIMEOUT_S + 3  # main.py's graceful-shutdown bound (timeout_graceful_shutdown)
EXIT_SLACK_S = 5.0  # interpreter teardown of a LiteLLM-laden process on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(llm_base: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_", "VOX_"))}
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LLM_MODEL="openai/scripted",
        LLM_API_BASE=llm_base,
        OPENAI_API_KEY="sk-test",
        VOX_CONTROL_ALLOW_LOCAL="1",
        VOX_DRAIN_TIMEOUT_S=str(DRAIN_TIMEOUT_S),
        HOST="127.0.0.1",
        PORT=str(port),
        PYTHONUNBUFFERED="1",
    )
    return env


async def wait_listening(port: int, proc: Process, timeout_s: float = 60.0) -> None:
    with anyio.fail_after(timeout_s):
        while True:
            assert proc.returncode is None, "server exited during start-up"
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)  # a child process's port: polling is the only signal there is
                continue
            await stream.aclose()
            return


async def collect(stream: ByteReceiveStream, into: bytearray) -> None:
    async for chunk in stream:  # drained while the server runs, so its log never stalls it
        into += chunk


@contextlib.asynccontextmanager
async def running_server(env: dict[str, str], port: int) -> AsyncIterator[tuple[Process, bytearray]]:
    log = bytearray()
    cmd = [sys.executable, "main.py"]
    proc = await anyio.open_process(cmd, cwd=ROOT, env=env, stderr=subprocess.STDOUT)
    async with proc, anyio.create_task_group() as tg:
        assert proc.stdout is not None
        tg.start_soon(collect, proc.stdout, log)
        try:
            await wait_listening(port, proc)
            yield proc, log
            with anyio.fail_after(DRAIN_TIMEOUT_S + 10):
                await proc.wait()
        finally:
            if proc.returncode is None:  # a failed test must not leave the server behind
                proc.kill()
                with anyio.CancelScope(shield=True):
                    await proc.wait()


async def test_one_sigterm_flushes_the_held_action_of_every_call_then_exits() -> None:
    replies = [
        LlmReply(tool_calls=(ToolCallSpec("call_transfer", {"summary": f"caller {t}"}),), when_user_says=t)
        for t in TOKENS
    ]
    port = free_port()
    # A ~9 s confirmation: SIGTERM always lands inside all three, however slow the machine. (It
    # costs nothing: the shutdown releases the actions at once.)
    slow = TtsModel(first_audio_s=0.05, words_per_s=1.5)
    sims: dict[str, HarnessSimulator] = {}
    async with ScriptedLlm(replies) as llm, VoxEngineEmulator() as emulator:
        async with running_server(server_env(llm.api_base, port), port) as (proc, log):
            ws_url = f"ws://127.0.0.1:{port}/ws"
            async with contextlib.AsyncExitStack() as calls:
                for token in TOKENS:
                    sims[token] = await calls.enter_async_context(
                        HarnessSimulator.connect(
                            ws_url,
                            metadata={"vox_session_control_url": emulator.control_url(token)},
                            tts=slow,
                            call_id=f"call-{token}",
                        )
                    )

                async def into_the_confirmation(token: str) -> None:
                    sim = sims[token]
                    await sim.wait_for("agent_turn_started", timeout_s=30)  # the introduction
                    await sim.user_says(f"Let me speak to a person, {token}.")  # talked over
                    await sim.wait_for("agent_word", where=lambda e: e.detail["turn"] == 2, timeout_s=30)

                async with anyio.create_task_group() as tg:
                    for token in TOKENS:
                        tg.start_soon(into_the_confirmation, token)
                # Every call is mid-confirmation, its transfer held.
                assert emulator.requests == []
                assert all(not sim.closed for sim in sims.values())
                sigterm_at = now()
                proc.send_signal(signal.SIGTERM)
                requests = await emulator.wait_for_requests(len(TOKENS), timeout=DRAIN_TIMEOUT_S + 5)
                closed = {t: await sims[t].wait_closed(timeout_s=DRAIN_TIMEOUT_S + 5) for t in TOKENS}
            with anyio.fail_after(GRACE_S + 10):
                await proc.wait()
            exited_at = now()
    output = log.decode(errors="replace")
    assert proc.returncode in (0, -signal.SIGTERM), output[-3000:]
    assert exited_at - sigterm_at <= GRACE_S + EXIT_SLACK_S, "the process outlived its grace period"
    # One request, one effect per call, each to its own session, none before the SIGTERM, all
    # within the drain bound.
    assert sorted(r.session for r in requests) == sorted(TOKENS)
    assert all(sigterm_at <= r.time <= sigterm_at + DRAIN_TIMEOUT_S for r in requests)
    assert all(r.response is not None and r.response.get("ok") is True for r in requests)
    assert len(emulator.effects) == len(TOKENS) == len({e.id for e in emulator.effects})
    for effect in emulator.effects:
        assert effect.action == "call_transfer" and effect.summary == f"caller {effect.session}"
    # Released by the end of each call (the server closed them), after their speech had begun.
    flushed = re.findall(
        r"control action call_transfer id=\S+ delivered reason=accepted .*released_by=(\w+)", output
    )
    assert flushed == ["call_ended"] * len(TOKENS), flushed
    for token in TOKENS:
        assert closed[token].detail["by"] == "app"
        turn = sims[token].timeline.turns()[-1]
        assert prompt.TRANSFER_CONFIRMATION.startswith(turn.text.split()[0])
