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
from lab.replay import load_recording, replay
from lab.scripted_llm import LlmReply, ScriptedLlm, ToolCallSpec
from lab.simulate import main as simulate_main
from lab.tts_model import TtsModel
from lab.voxengine_emulator import VoxEngineEmulator
from tests.server_process import ROOT, free_port, running_server, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # real server processes


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


RECORDINGS = Path(__file__).resolve().parents[1] / "recordings"
# Recorded through the real app (VOX_RECORD_DIR) from a harness that sends no `event_id`
# (`CallLab.call(event_ids=False)`): the app generated every `responding_to` id itself.
NO_EVENT_ID = RECORDINGS / "no-event-id.jsonl"


def test_the_recording_without_event_ids_really_has_none() -> None:
    frames = [json.loads(line)["msg"] for line in NO_EVENT_ID.read_text().splitlines()[1:]]
    assert all("event_id" not in msg for msg in frames)
    assert any(msg.get("type") == "tool_call" and msg.get("name") == "call_transfer" for msg in frames)


async def test_a_call_from_a_harness_without_event_ids_replays() -> None:
    recording = load_recording(NO_EVENT_ID)
    [reply] = recording.llm_replies()
    assert [call.name for call in reply.tool_calls] == ["call_transfer"]
    assert reply.when_user_says == "Can I talk to a real person, please?"
    result = await replay(NO_EVENT_ID)
    assert result.problems == [], result.report()
    [timing] = result.actions
    assert timing.delivered and timing.offset_s is not None and 0 <= timing.offset_s < 0.5


def test_replay_exit_statuses_tell_a_bad_file_and_an_unrebuildable_call_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.jsonl"
    assert simulate_main(["--replay", str(missing)]) == 4
    err = capsys.readouterr().err.strip()
    assert err.startswith("replay: ") and "cannot read it" in err and "\n" not in err  # no traceback

    not_one = tmp_path / "notes.jsonl"
    not_one.write_text("this is not json\n")
    assert simulate_main(["--replay", str(not_one)]) == 4
    err = capsys.readouterr().err.strip()
    assert "not a recording" in err and "\n" not in err

    # The caller's turn ends are gone: the transfer's tool call answers no caller turn.
    lines = NO_EVENT_ID.read_text().splitlines()
    kept = [line for line in lines if '"type": "user_state"' not in line]
    orphan = tmp_path / "orphan.jsonl"
    orphan.write_text("\n".join(kept) + "\n")
    assert simulate_main(["--replay", str(orphan)]) == 3
    err = capsys.readouterr().err.strip()
    assert "could not rebuild the agent's replies: 1 of 1 telephony tool calls follow no caller turn" in err
