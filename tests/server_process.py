"""Running the agent the way users do, in its own process (`uvicorn main:app`, `python main.py`)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, Process

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(llm_api_base: str, **overrides: str) -> dict[str, str]:
    """This environment minus OTEL_/LLM_/VOX_/SSL_CERT_ settings, plus a scripted LLM; pass the
    emulator's `env()` (VOX_CONTROL_RESOLVE, SSL_CERT_FILE, VOX_CONTROL_ALLOW_LOCAL) to reach it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_", "VOX_", "SSL_CERT_"))}
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LLM_MODEL="openai/scripted",
        LLM_API_BASE=llm_api_base,
        OPENAI_API_KEY="sk-test",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
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


async def _collect(stream: ByteReceiveStream, into: bytearray) -> None:
    async for chunk in stream:  # drained while the server runs, so a chatty log never stalls it
        into += chunk


@contextlib.asynccontextmanager
async def running_server(
    cmd: list[str], env: dict[str, str], port: int, *, exit_timeout_s: float = 30.0
) -> AsyncIterator[tuple[Process, bytearray]]:
    """Start `cmd`, wait until `port` listens, yield (process, its output so far); on exit wait for
    the process to end (the block is expected to have signalled it), killing it if a test failed."""
    log = bytearray()
    proc = await anyio.open_process(cmd, cwd=ROOT, env=env, stderr=subprocess.STDOUT)
    async with proc, anyio.create_task_group() as tg:
        assert proc.stdout is not None
        tg.start_soon(_collect, proc.stdout, log)
        try:
            await wait_listening(port, proc)
            yield proc, log
            with anyio.fail_after(exit_timeout_s):
                await proc.wait()
        finally:
            if proc.returncode is None:  # a failed test must not leave the server behind
                proc.kill()
                with anyio.CancelScope(shield=True):
                    await proc.wait()
