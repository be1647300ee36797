"""A benchmark worker process and its pipe, both sides: the app under test (`bench.app_process`)
and the load generators (`bench.world`) each run in one.

The parent sends `(command, *args)` and reads `(step, value)` answers in order. The child says
`ready` once it serves, answers every command with `ok` (an exception it raised travels back and
is raised in the parent, with its type) and returns on `stop`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import anyio

from bench.progress import quiet_logs

START_TIMEOUT_S = 60.0
LAG_TICK_S = 0.02


class ChildProcess:
    """The parent's side: `target(conn, *args)` in a spawned process."""

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...], name: str) -> None:
        ctx = get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process: BaseProcess = ctx.Process(target=target, args=(child, *args), name=name, daemon=True)
        self._child_conn = child
        self._lock = anyio.Lock()

    async def start(self) -> Any:
        """Starts the process; returns what it sent with `ready`."""
        self.process.start()
        self._child_conn.close()
        return await self.expect("ready", START_TIMEOUT_S)

    async def stop(self) -> None:
        try:
            await self.command("stop", timeout_s=15)
        except (EOFError, OSError, RuntimeError):
            pass
        await anyio.to_thread.run_sync(self.process.join, 10)
        if self.process.is_alive():
            self.process.terminate()  # our own child, by its handle
            await anyio.to_thread.run_sync(self.process.join, 5)
        self.conn.close()

    def send(self, *message: Any) -> None:
        self.conn.send(message)

    async def expect(self, step: str, timeout_s: float) -> Any:
        """The next answer's value, which must be `step`'s."""

        def receive() -> tuple[str, Any]:
            if not self.conn.poll(timeout_s):
                raise RuntimeError(f"{self.process.name} did not answer within {timeout_s:g} s")
            message: tuple[str, Any] = self.conn.recv()
            return message

        got, value = await anyio.to_thread.run_sync(receive)
        if isinstance(value, Exception):
            raise value
        if got != step:
            raise RuntimeError(f"{self.process.name} said {got!r}, expected {step!r}")
        return value

    async def command(self, name: str, *args: Any, timeout_s: float = 120.0) -> Any:
        async with self._lock:
            self.send(name, *args)
            return await self.expect("ok", timeout_s)


async def serve_parent(
    conn: Connection, ready: Any, handle: Callable[[str, list[Any]], Awaitable[Any]]
) -> None:
    """The child's side: says `ready` (with `ready`), then answers each command until `stop`."""
    conn.send(("ready", ready))
    while True:
        command, *args = await anyio.to_thread.run_sync(conn.recv)
        if command == "stop":
            conn.send(("ok", None))
            return
        try:
            reply = await handle(command, args)
        except Exception as exc:  # the parent raises it
            reply = exc
        conn.send(("ok", reply))


def run_child(conn: Connection, main: Callable[[], Awaitable[None]], *, uvloop: bool) -> None:
    """A worker process's body: only errors logged, `main` on its own event loop, the pipe closed."""
    quiet_logs()
    try:
        anyio.run(main, backend_options={"use_uvloop": uvloop})
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()


async def sample_lag(into: list[float]) -> None:
    """Appends this event loop's lag (how late a timer fired) every LAG_TICK_S, until cancelled."""
    while True:
        due = anyio.current_time() + LAG_TICK_S
        await anyio.sleep_until(due)
        into.append(anyio.current_time() - due)
