"""`vox.agent.active_calls` from a server process (`python main.py`) to a real OTLP/HTTP receiver
on loopback: the count follows the calls, the drain shows as the `vox.agent.draining` attribute,
and the shutdown exports the final 0."""

from __future__ import annotations

import signal
import sys

import anyio
import pytest

from lab.harness import HarnessSimulator
from lab.scripted_llm import ScriptedLlm
from lab.tts_model import TtsModel
from lab.voxengine_emulator import VoxEngineEmulator
from telemetry.call_metrics import ACTIVE_CALLS, DRAINING
from tests.otlp_metrics_receiver import OtlpMetricsReceiver, Point
from tests.server_process import free_port, running_server, server_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # real server processes


def active(value: int, *, draining: bool) -> object:
    def match(p: Point) -> bool:
        return p.metric == ACTIVE_CALLS and p.value == value and p.attributes == {DRAINING: draining}

    return match


async def test_active_calls_are_exported_with_the_drain_and_a_last_zero_at_shutdown() -> None:
    port = free_port()
    with OtlpMetricsReceiver() as receiver:
        async with ScriptedLlm([]) as llm, VoxEngineEmulator() as emulator:
            env = server_env(
                llm.api_base,
                HOST="127.0.0.1",
                PORT=str(port),
                OTEL_EXPORTER_OTLP_ENDPOINT=receiver.base_url,
                OTEL_METRIC_EXPORT_INTERVAL="200",  # ms; the SDK's default is 60 s
                OTEL_SERVICE_NAME="metrics-e2e",
                **emulator.env(),
            )
            async with running_server([sys.executable, "main.py"], env, port) as (proc, log):
                ws_url = f"ws://127.0.0.1:{port}/ws"
                metadata = emulator.start_metadata()
                async with HarnessSimulator.connect(
                    ws_url, metadata=metadata, tts=TtsModel(words_per_s=20)
                ) as sim:
                    await sim.wait_agent_turn_end(1, timeout_s=30)
                    one = await receiver.wait_for(active(1, draining=False), timeout_s=15)
                    proc.send_signal(signal.SIGTERM)
                    await receiver.wait_for(active(1, draining=True), timeout_s=15)
                    assert proc.returncode is None
                with anyio.fail_after(20):
                    await proc.wait()
    output = log.decode(errors="replace")
    assert proc.returncode in (0, -signal.SIGTERM), output[-3000:]
    ours = [p for p in receiver.points if p.metric == ACTIVE_CALLS]
    assert ours[-1].value == 0 and ours[-1].attributes == {DRAINING: True}  # the shutdown's last export
    draining_from = next(i for i, p in enumerate(ours) if p.attributes[DRAINING])
    assert all(p.attributes[DRAINING] for p in ours[draining_from:])  # a drain never ends
    assert one.monotonic is False  # an up-down counter
    assert one.resource["service.name"] == "metrics-e2e"
    assert one.resource["service.instance.id"]  # one series per process (the SDK's per-process UUID)
    assert "metrics on: vox.agent.active_calls" in output
