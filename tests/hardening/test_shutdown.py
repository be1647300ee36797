"""Shutdown with several calls in flight: `python main.py` in its own process, three concurrent
calls each holding a transfer mid-confirmation, one SIGTERM. The calls go on through the drain
(`AGENT_DRAIN_TIMEOUT_S`); when it times out the server closes them, and every held action is
flushed (released by the call's end, delivered once, to its own call's session) within the grace
period, and the process exits. (tests/e2e/test_drain.py: calls that end during the drain;
tests/e2e/test_server_process.py: one call, and a second SIGTERM during the flush.)
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys

import anyio
import pytest

from agent import prompt
from lab.harness import HarnessSimulator
from lab.scripted_llm import LlmReply, ScriptedLlm, ToolCallSpec
from lab.timeline import now
from lab.tts_model import TtsModel
from lab.voxengine_emulator import VoxEngineEmulator
from tests.server_process import free_port, running_server, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # real server processes
TOKENS = ("alpha", "bravo", "charlie")
CALL_DRAIN_S = 1.5  # AGENT_DRAIN_TIMEOUT_S: far shorter than the confirmations, so they outlive it
DRAIN_TIMEOUT_S = 8.0  # VOX_DRAIN_TIMEOUT_S
# The call drain, then main.py's graceful-shutdown bound (timeout_graceful_shutdown).
GRACE_S = CALL_DRAIN_S + DRAIN_TIMEOUT_S + 3
EXIT_SLACK_S = 5.0  # interpreter teardown of a LiteLLM-laden process on a loaded 2-core machine


def env_for(llm_base: str, port: int, emulator: VoxEngineEmulator) -> dict[str, str]:
    return server_env(
        llm_base,
        AGENT_DRAIN_TIMEOUT_S=str(CALL_DRAIN_S),
        VOX_DRAIN_TIMEOUT_S=str(DRAIN_TIMEOUT_S),
        HOST="127.0.0.1",
        PORT=str(port),
        **emulator.env(),
    )


async def test_one_sigterm_flushes_the_held_action_of_every_call_then_exits() -> None:
    replies = [
        LlmReply(tool_calls=(ToolCallSpec("call_transfer", {"summary": f"caller {t}"}),), when_user_says=t)
        for t in TOKENS
    ]
    port = free_port()
    # A ~9 s confirmation: SIGTERM and the drain's timeout always land inside all three, however
    # slow the machine. (It costs nothing: the shutdown releases the actions at once.)
    slow = TtsModel(first_audio_s=0.05, words_per_s=1.5)
    sims: dict[str, HarnessSimulator] = {}
    async with ScriptedLlm(replies) as llm, VoxEngineEmulator() as emulator:
        main_py = [sys.executable, "main.py"]
        async with running_server(
            main_py, env_for(llm.api_base, port, emulator), port, exit_timeout_s=GRACE_S + 10
        ) as (
            proc,
            log,
        ):
            ws_url = f"ws://127.0.0.1:{port}/ws"
            async with contextlib.AsyncExitStack() as calls:
                for token in TOKENS:
                    sims[token] = await calls.enter_async_context(
                        HarnessSimulator.connect(
                            ws_url,
                            metadata=emulator.start_metadata(token),
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
                requests = await emulator.wait_for_requests(len(TOKENS), timeout=GRACE_S + 5)
                closed = {t: await sims[t].wait_closed(timeout_s=GRACE_S + 5) for t in TOKENS}
            with anyio.fail_after(GRACE_S + 10):
                await proc.wait()
            exited_at = now()
    output = log.decode(errors="replace")
    assert proc.returncode in (0, -signal.SIGTERM), output[-3000:]
    assert exited_at - sigterm_at <= GRACE_S + EXIT_SLACK_S, "the process outlived its grace period"
    # The calls went on through the call drain, then were closed by the server; one request, one
    # effect per call, each to its own session, none before the drain timed out, all within the
    # flush bound after it.
    assert all(c.at >= sigterm_at + CALL_DRAIN_S for c in closed.values())
    assert "drain timeout: closing the 3 call(s) still open" in output
    assert sorted(r.session for r in requests) == sorted(TOKENS)
    assert all(
        sigterm_at + CALL_DRAIN_S <= r.time <= sigterm_at + CALL_DRAIN_S + DRAIN_TIMEOUT_S for r in requests
    )
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
