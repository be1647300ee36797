"""A production call recorded by the server (`VOX_RECORD_DIR`, `uvicorn main:app`) replays as a
timing test with `python -m lab simulate --replay FILE`, in processes of their own."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import anyio
import pytest

from lab.harness import HarnessSimulator
from lab.scripted_llm import LlmReply, ScriptedLlm, ToolCallSpec
from lab.tts_model import TtsModel
from lab.voxengine_emulator import VoxEngineEmulator
from tests.server_process import ROOT, free_port, running_server, server_env

pytestmark = pytest.mark.anyio


async def test_a_call_recorded_by_the_server_replays_and_reports_its_offset(tmp_path: Path) -> None:
    port = free_port()
    reply = LlmReply(tool_calls=(ToolCallSpec("call_transfer", {"summary": "recorded"}),))
    async with ScriptedLlm([reply]) as llm, VoxEngineEmulator() as emulator:
        env = server_env(llm.api_base, VOX_RECORD_DIR=str(tmp_path), **emulator.env())
        cmd = [sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port)]
        async with running_server(cmd, env, port) as (proc, _):
            ws_url = f"ws://127.0.0.1:{port}/ws"
            metadata = emulator.start_metadata()
            tts = TtsModel(first_audio_s=0.05, words_per_s=6)
            async with HarnessSimulator.connect(ws_url, metadata=metadata, tts=tts, call_id="prod-42") as sim:
                await sim.wait_agent_turn_end(1, timeout_s=30)
                await sim.user_says("I want to talk to a person.")
                await emulator.wait_for_effects(1, timeout=15)
                await sim.wait_until_idle(timeout_s=10)
            path = tmp_path / "prod-42.jsonl"
            with anyio.fail_after(10):
                while not path.exists():  # noqa: ASYNC110  (written by the server when the call ends)
                    await anyio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
    session, token = emulator.control_url().rsplit("/", 2)[1:]
    text = path.read_text()
    assert token not in text and session not in text  # the bearer path never reaches the file
    header, start = (json.loads(line) for line in text.splitlines()[:2])
    assert header["format"] == "vox-line-agent/recording" and header["call_id"] == "prod-42"
    assert start["msg"]["metadata"]["vox_session_control_url"].endswith("/REDACTED")

    replay_png = tmp_path / "replay.png"
    done = await anyio.run_process(
        [sys.executable, "-m", "lab", "simulate", "--replay", str(path), "--plot", str(replay_png)],
        cwd=ROOT,
        env=server_env("http://127.0.0.1:9/v1"),  # the replay brings its own scripted LLM
        check=False,
    )
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, stdout + stderr
    assert "call_transfer: +" in stdout and "from the end of its confirming turn" in stdout
    assert replay_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
