"""SIGTERM drains the calls before uvicorn shuts down, in every process that serves the app.

Uvicorn's own handling of SIGTERM closes every websocket at once (uvicorn/server.py `shutdown`:
`connection.shutdown()` on every connection), which ends every call. So while the app's lifespan
runs, `drain_on_signals` puts its own handler in front of uvicorn's for SIGTERM and SIGINT:

1. first signal: `Admission.begin_drain()` at once (new calls refused, `/status` 503: see
   `agent.gate`); live calls go on. When the last one ends, or after `timeout_s`
   (`AGENT_DRAIN_TIMEOUT_S`), the signal is handed to uvicorn, whose shutdown closes the calls
   still open; each releases its held actions and drains them, bounded by `VOX_DRAIN_TIMEOUT_S`.
2. a second signal: uvicorn exits now (`force_exit`: it stops waiting for connections and skips
   the lifespan's shutdown), as a second Ctrl+C does.

Uvicorn installs `Server.handle_exit` with `signal.signal` in the main thread before the lifespan
starts (uvicorn/server.py `capture_signals`), in `python main.py`, in each `WEB_CONCURRENCY`
worker (uvicorn/supervisors/multiprocess.py builds a plain `uvicorn.Server` there) and in
`uvicorn main:app`; that handler is how the server is found. Where the app is served otherwise (the
lab's in-process server captures no signals; another ASGI server), nothing is installed and the
server's own signal handling applies.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType

import anyio
import uvicorn
from loguru import logger

from agent.admission import Admission

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _serving_uvicorn() -> uvicorn.Server | None:
    """The uvicorn server whose `handle_exit` is this process's SIGTERM handler, if any."""
    if threading.current_thread() is not threading.main_thread():
        return None  # signal handlers belong to the main thread
    owner = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return owner if isinstance(owner, uvicorn.Server) else None


@asynccontextmanager
async def drain_on_signals(admission: Admission, timeout_s: float) -> AsyncIterator[None]:
    """For the block's duration, SIGTERM/SIGINT drain `admission` first (see the module doc)."""
    server = _serving_uvicorn()
    if server is None:
        yield
        return
    loop = asyncio.get_running_loop()
    requested = anyio.Event()
    received: list[int] = []

    def on_signal(sig: int, frame: FrameType | None) -> None:
        if received:  # the second one: now
            server.force_exit = True
            server.handle_exit(sig, frame)
            return
        received.append(sig)
        admission.begin_drain()
        loop.call_soon_threadsafe(requested.set)  # wakes the loop: a signal may land inside select()

    async def drain_then_exit() -> None:
        await requested.wait()
        logger.info(
            f"draining: new calls refused, {admission.active} call(s) go on until they end "
            f"(at most {timeout_s:g} s; a second signal exits at once)"
        )
        with anyio.move_on_after(timeout_s) as bound:
            await admission.wait_idle()
        if bound.cancelled_caught:
            logger.warning(f"drain timeout: closing the {admission.active} call(s) still open")
        else:
            logger.info("drained: no call open")
        server.handle_exit(received[0], None)  # uvicorn's shutdown, then the exit by that signal

    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, on_signal)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain_then_exit)
            yield
            tg.cancel_scope.cancel()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
