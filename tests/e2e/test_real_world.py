"""The agent as a new user deploys it, against VoxEngine's real URL shape: a host name
(`https://www-us-35-230.voximplant.com:<port>/request/<session>/<token>`), reached through
`VOX_CONTROL_RESOLVE` and `SSL_CERT_FILE` in the lab, never without `VOX_CONTROL_ALLOW_LOCAL=1`;
and a misconfigured process that refuses to start."""

from __future__ import annotations

import subprocess
import sys

import anyio
import pytest

from lab.harness import HarnessSimulator
from lab.scripted_llm import LlmReply, ScriptedLlm, ToolCallSpec
from lab.tls import LAB_CONTROL_HOST
from lab.tts_model import TtsModel
from lab.voxengine_emulator import VoxEngineEmulator
from tests.server_process import ROOT, free_port, running_server, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # real server processes

TRANSFER = LlmReply(tool_calls=(ToolCallSpec("call_transfer", {"summary": "wants a person"}),))
HOURS = LlmReply(text="We are open nine to five.", when_user_says="hours")
TTS = TtsModel(first_audio_s=0.05, words_per_s=6)
LATE_BOUND_S = 0.300  # as the timing suite: generous for a loaded 2-core machine


async def test_a_call_reaches_voxengine_by_its_real_host_name_once_right_after_the_confirmation() -> None:
    port = free_port()
    async with ScriptedLlm([TRANSFER]) as llm, VoxEngineEmulator() as emulator:
        env = server_env(llm.api_base, HOST="127.0.0.1", PORT=str(port), **emulator.env())
        async with running_server([sys.executable, "main.py"], env, port) as (proc, log):
            metadata = emulator.start_metadata()
            assert metadata["vox_session_control_url"].startswith(f"https://{LAB_CONTROL_HOST}:")
            async with HarnessSimulator.connect(
                f"ws://127.0.0.1:{port}/ws", metadata=metadata, tts=TTS
            ) as sim:
                await sim.wait_agent_turn_end(1, timeout_s=30)
                await sim.user_says("Let me speak to someone.")
                confirmation = await sim.wait_agent_turn_end(2, timeout_s=30)
                [request] = await emulator.wait_for_requests(1, timeout=10)
                await sim.wait_until_idle(timeout_s=10)
            proc.terminate()
    assert request.response is not None and request.response["ok"] is True
    assert request.headers["host"] == f"{LAB_CONTROL_HOST}:{emulator.pin.port}"
    assert set(emulator.server_names) == {LAB_CONTROL_HOST}  # SNI: the name, verified by the lab CA
    assert confirmation.ended_at is not None
    assert 0.0 <= request.time - confirmation.ended_at <= LATE_BOUND_S
    assert len(emulator.requests) == 1 and [e.action for e in emulator.effects] == ["call_transfer"]
    assert "VOX_CONTROL_RESOLVE is ignored" not in log.decode(errors="replace")


async def test_without_the_lab_setting_the_pinned_name_is_never_fetched_and_the_call_goes_on() -> None:
    port = free_port()
    async with ScriptedLlm([TRANSFER, HOURS]) as llm, VoxEngineEmulator() as emulator:
        lab_env = emulator.env()
        del lab_env["VOX_CONTROL_ALLOW_LOCAL"]  # the pin and the CA, as a user might leave them set
        # The name goes to the machine's resolver: unresolvable here, or a real VoxEngine address
        # on a port nobody answers. Either way the attempts end within this deadline.
        env = server_env(
            llm.api_base, HOST="127.0.0.1", PORT=str(port), VOX_CONTROL_DEADLINE_S="1.5", **lab_env
        )
        async with running_server([sys.executable, "main.py"], env, port) as (proc, log):
            ws_url = f"ws://127.0.0.1:{port}/ws"
            async with HarnessSimulator.connect(ws_url, metadata=emulator.start_metadata(), tts=TTS) as sim:
                await sim.wait_agent_turn_end(1, timeout_s=30)
                await sim.user_says("Let me speak to someone.")
                await sim.wait_agent_turn_end(2, timeout_s=30)
                await sim.user_says("What are your hours?")
                answer = await sim.wait_agent_turn_end(3, timeout_s=30)
                with anyio.fail_after(15):
                    while b"control action call_transfer" not in log:  # noqa: ASYNC110  (a child's log)
                        await anyio.sleep(0.05)
            proc.terminate()
    output = log.decode(errors="replace")
    assert emulator.requests == [] and emulator.connections == 0, "the pinned emulator was reached"
    assert output.count("VOX_CONTROL_RESOLVE is ignored") == 1  # one warning, at start-up
    assert "control action call_transfer" in output and "failed reason=deadline_exceeded" in output
    assert answer.text == HOURS.text  # the call went on


def run_main(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize(
    "argv",
    [[sys.executable, "main.py"], [sys.executable, "-m", "uvicorn", "main:app", "--port", "0"]],
    ids=["python main.py", "uvicorn main:app"],
)
def test_without_an_llm_key_the_process_exits_at_once_naming_it(argv: list[str]) -> None:
    # As `env -i PATH=$PATH python main.py`: nothing of the caller's environment.
    done = run_main(argv, {"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if "configuration error" in ln]
    assert "OPENAI_API_KEY" in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VOX_CONTROL_RESOLVE", "www-us-35-230.voximplant.com:12093"),
        ("VOX_CONTROL_DEADLINE_S", "soon"),
        ("SSL_CERT_FILE", "/nonexistent/ca.pem"),
        ("VOX_CONTROL_ALLOWED_HOSTS", "*.example.org"),
    ],
)
def test_a_malformed_setting_stops_the_process_at_once_naming_it(variable: str, value: str) -> None:
    done = run_main(
        [sys.executable, "main.py"], {"PATH": "/usr/bin:/bin", "OPENAI_API_KEY": "k", variable: value}
    )
    assert done.returncode == 2
    assert f"configuration error: {variable}" in done.stderr
