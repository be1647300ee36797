"""Serve an ASGI app with uvicorn on 127.0.0.1 inside the current event loop."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import anyio
import uvicorn


class _LoopbackServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The lab runs inside someone else's process (pytest, the simulate command): signals
        # stay theirs.
        yield


@contextlib.asynccontextmanager
async def serve_on_loopback(
    app: Any,
    *,
    lifespan: Literal["auto", "on", "off"] = "on",
    graceful_shutdown_s: float | None = None,
    startup_timeout_s: float = 10.0,
    http: Literal["auto", "h11", "httptools"] = "auto",
    sock: socket.socket | None = None,
) -> AsyncIterator[uvicorn.Server]:
    """Run `app` until the block exits; the server's bound port is `server_port(server)`.

    `sock`: serve on this already-listening socket (shared by several processes, as uvicorn's
    workers share theirs) instead of binding a port of its own.

    Exit is uvicorn's own graceful shutdown: open websockets are closed, connections drained
    (bounded by `graceful_shutdown_s`), then the lifespan ends.
    """
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan=lifespan,
        log_config=None,  # leave the host process's logging alone
        access_log=False,
        http=http,
        timeout_graceful_shutdown=None if graceful_shutdown_s is None else int(graceful_shutdown_s) + 1,
    )
    server = _LoopbackServer(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, None if sock is None else [sock])
        with anyio.fail_after(startup_timeout_s):
            while not server.started:  # noqa: ASYNC110  (uvicorn offers no startup event)
                await anyio.sleep(0.002)
        try:
            yield server
        finally:
            server.should_exit = True


def server_port(server: uvicorn.Server) -> int:
    return int(server.servers[0].sockets[0].getsockname()[1])
