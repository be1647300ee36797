"""`uvicorn main:app` as users run it, in its own process: a real call, then SIGTERM with an
action still held — the call outlives the drain (`AGENT_DRAIN_TIMEOUT_S`, short here), is closed,
and its action is delivered before the process exits."""

from __future__ import annotations

import signal
import sys

import anyio
import pytest

from agent import prompt
from agent.runtime import SERVER_GC
from lab.faults import Fault, FaultPlan
from lab.harness import HarnessSimulator
from lab.otlp_receiver import OtlpReceiver
from lab.scripted_llm import LlmReply, ScriptedLlm, ToolCallSpec
from lab.timeline import now
from lab.tts_model import TtsModel
from lab.voxengine_emulator import VoxEngineEmulator
from tests.server_process import free_port, running_server, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # real server processes
CALL_DRAIN_S = "1"  # AGENT_DRAIN_TIMEOUT_S: shorter than the confirmation that holds the action


async def test_sigterm_delivers_the_held_action_then_exits() -> None:
    reply = LlmReply(tool_calls=(ToolCallSpec("call_transfer", {"summary": "agent please"}),))
    port = free_port()
    async with ScriptedLlm([reply]) as llm, VoxEngineEmulator() as emulator:
        cmd = [sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port)]
        env = server_env(llm.api_base, AGENT_DRAIN_TIMEOUT_S=CALL_DRAIN_S, **emulator.env())
        async with running_server(cmd, env, port) as (proc, log):
            metadata = emulator.start_metadata()
            slow = TtsModel(first_audio_s=0.05, words_per_s=3)  # a ~4.5 s confirmation
            ws_url = f"ws://127.0.0.1:{port}/ws"
            async with HarnessSimulator.connect(ws_url, metadata=metadata, tts=slow) as sim:
                await sim.wait_agent_turn_end(1, timeout_s=30)
                await sim.user_says("Let me speak to someone.")
                await sim.wait_for("agent_word", where=lambda e: e.detail["turn"] == 2, timeout_s=20)
                assert emulator.requests == []  # held while the confirmation plays
                proc.send_signal(signal.SIGTERM)
                sigterm_at = now()
                [request] = await emulator.wait_for_requests(1, timeout=15)
                closed = await sim.wait_closed(timeout_s=15)
    output = log.decode(errors="replace")
    # uvicorn re-raises the captured SIGTERM once its graceful shutdown is complete.
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "control action call_transfer" in output and "delivered" in output
    assert request.response is not None and request.response["ok"] is True
    assert closed.detail["by"] == "app" and closed.at >= sigterm_at + float(CALL_DRAIN_S)
    assert request.time >= closed.at - 0.5  # released by the shutdown, not by a timer
    assert [e.action for e in emulator.effects] == ["call_transfer"]
    assert prompt.TRANSFER_CONFIRMATION.split()[0] in sim.timeline.turns()[-1].text
    session, token = emulator.control_url().rsplit("/", 2)[1:]
    assert "Received start message" in output and "vox_session_control_url" in output
    assert token not in output and session not in output  # the secret path never reaches the logs
    # The app's lifespan applied the server GC policy; uvicorn picked uvloop by itself.
    assert f"serving: event loop uvloop, cyclic GC on with thresholds {SERVER_GC.thresholds}" in output


async def test_a_second_sigterm_exits_at_once() -> None:
    # VoxEngine hangs, so the flush after the call drain would wait out the 10 s delivery deadline.
    reply = LlmReply(tool_calls=(ToolCallSpec("call_transfer", {}),))
    port = free_port()
    async with (
        ScriptedLlm([reply]) as llm,
        VoxEngineEmulator(faults=FaultPlan(rates={"hang": 1.0})) as emulator,
    ):
        env = server_env(
            llm.api_base,
            PORT=str(port),
            HOST="127.0.0.1",
            VOX_CONTROL_DEADLINE_S="10",
            AGENT_DRAIN_TIMEOUT_S=CALL_DRAIN_S,
            **emulator.env(),
        )
        async with running_server([sys.executable, "main.py"], env, port) as (proc, _):
            metadata = emulator.start_metadata()
            ws_url = f"ws://127.0.0.1:{port}/ws"
            async with HarnessSimulator.connect(
                ws_url, metadata=metadata, tts=TtsModel(words_per_s=3)
            ) as sim:
                await sim.wait_agent_turn_end(1, timeout_s=30)
                await sim.user_says("A person, please.")
                await sim.wait_for("agent_word", where=lambda e: e.detail["turn"] == 2, timeout_s=20)
                proc.send_signal(signal.SIGTERM)
                await emulator.wait_for_requests(1, timeout=15)  # draining: the POST hangs
                second = anyio.current_time()
                proc.send_signal(signal.SIGTERM)
                with anyio.fail_after(3):
                    await proc.wait()
    assert anyio.current_time() - second < 3.0
    assert emulator.effects == []


async def test_web_concurrency_runs_worker_processes_that_each_serve_calls() -> None:
    replies = [LlmReply(text="Hello there.")] * 4
    port = free_port()
    async with ScriptedLlm(replies) as llm, VoxEngineEmulator() as emulator:
        env = server_env(
            llm.api_base, PORT=str(port), HOST="127.0.0.1", WEB_CONCURRENCY="2", **emulator.env()
        )
        async with running_server([sys.executable, "main.py"], env, port) as (proc, log):
            for n in range(4):
                metadata = emulator.start_metadata(session=f"s{n}")
                async with HarnessSimulator.connect(
                    f"ws://127.0.0.1:{port}/ws", metadata=metadata, tts=TtsModel(words_per_s=20)
                ) as sim:
                    await sim.wait_agent_turn_end(1, timeout_s=30)
            proc.send_signal(signal.SIGTERM)
    output = log.decode(errors="replace")
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Started parent process" in output
    # Each worker runs the runtime `python main.py` chooses (agent/runtime.py).
    serving = f"serving: event loop uvloop, cyclic GC on with thresholds {SERVER_GC.thresholds}"
    assert output.count(serving) == 2, output
    assert output.count("Received start message") == 4


async def test_uvicorn_main_app_exports_one_trace_per_call_over_otlp() -> None:
    reply = LlmReply(tool_calls=(ToolCallSpec("call_transfer", {"summary": "agent please"}),))
    port = free_port()
    faults = FaultPlan(sequence=(Fault.http(503),))
    with OtlpReceiver() as receiver:
        async with ScriptedLlm([reply]) as llm, VoxEngineEmulator(faults=faults) as emulator:
            env = server_env(
                llm.api_base,
                OTEL_EXPORTER_OTLP_ENDPOINT=receiver.base_url,
                OTEL_SERVICE_NAME="e2e",
                **emulator.env(),
            )
            cmd = [sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port)]
            async with running_server(cmd, env, port) as (proc, log):
                metadata = emulator.start_metadata()
                ws_url = f"ws://127.0.0.1:{port}/ws"
                async with HarnessSimulator.connect(
                    ws_url, metadata=metadata, tts=TtsModel(words_per_s=8)
                ) as sim:
                    await sim.wait_agent_turn_end(1, timeout_s=30)
                    await sim.user_says("Let me speak to someone.")
                    await emulator.wait_for_effects(1, timeout=15)
                proc.send_signal(signal.SIGTERM)  # the lifespan's end flushes the spans
        spans = receiver.spans()
        payload = receiver.raw()
    assert proc.returncode in (0, -signal.SIGTERM), log.decode(errors="replace")
    [root] = [s for s in spans if s.name == "call"]
    trace = [s for s in spans if s.trace_id == root.trace_id]
    assert {"agent.turn", "user.turn", "control call_transfer", "POST"} <= {s.name for s in trace}
    [action] = [s for s in trace if s.name == "control call_transfer"]
    posts = [s for s in trace if s.name == "POST"]
    assert len(posts) == 2 and all(p.parent_span_id == action.span_id for p in posts)
    first, second = emulator.requests
    assert all(r.headers["traceparent"].split("-")[1] == root.trace_id for r in (first, second))
    assert first.headers["x-traceparent"].split("-")[2] == posts[0].span_id
    session, token = emulator.control_url().rsplit("/", 2)[1:]
    assert token.encode() not in payload and session.encode() not in payload and b"/request/" not in payload
