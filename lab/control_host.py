"""A control host on loopback that clients reach the way production reaches VoxEngine: by a
VoxEngine-shaped host name, over verified TLS.

`LoopbackControlHost` serves a connection handler over TLS on 127.0.0.1 with a certificate for
`name` (default `www-us-35-230.voximplant.com`) from the lab CA. Its `network` is what a client
needs to get there through the production connection layer (`agent/control_transport.py`): a
`VOX_CONTROL_RESOLVE`-style pin of `name:port` to 127.0.0.1, the lab CA as `SSL_CERT_FILE`, and
`allow_local` (which only lets the *resolved* loopback address through; every other check runs).
`env()` gives the same as environment variables, for a server in its own process.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any

import anyio
import anyio.abc
import httpx
from anyio.streams.tls import TLSListener

from agent.control_transport import ControlNetwork, Pin, make_control_client
from lab.tls import LAB_CONTROL_HOST, lab_ca

__all__ = ["LAB_CONTROL_HOST", "LoopbackControlHost", "lab_client", "lab_network", "lab_resolver"]

log = logging.getLogger(__name__)

Handler = Callable[[anyio.abc.ByteStream], Awaitable[None]]
LOOPBACK = "127.0.0.1"


def lab_network(*pins: Pin, base: ControlNetwork | None = None) -> ControlNetwork:
    """`base` (default: production's) plus `pins`, the lab CA as trust store and local addresses
    allowed: how the lab's app reaches its control hosts."""
    base = base or ControlNetwork()
    return replace(
        base,
        allow_local=True,
        resolve=(*base.resolve, *pins),
        ssl_cert_file=str(lab_ca().ca_file),
        ssl_cert_dir=None,
    )


async def lab_resolver(host: str, port: int) -> list[str]:
    """DNS as seen from inside the lab: the lab's control host name is on 127.0.0.1, on any port."""
    if host != LAB_CONTROL_HOST:
        raise OSError(f"{host}: not a lab host")
    return [LOOPBACK]


def lab_client() -> httpx.AsyncClient:
    """A control client that reaches every lab host by name, whatever its port: the production
    connection layer (resolve, check, connect, SNI, verification) with `lab_resolver` as DNS.
    For tests of lab hosts themselves; the app reaches them through pins (`network`)."""
    return make_control_client(lab_network(), resolver=lab_resolver)


class LoopbackControlHost:
    """Serves `handler` over TLS on 127.0.0.1 as `https://<name>:<port>`; use as `async with`."""

    def __init__(
        self, handler: Handler, *, name: str = LAB_CONTROL_HOST, tls: ssl.SSLContext | None = None
    ) -> None:
        self.name = name
        self._handler = handler
        self._tls = tls
        self._port: int | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._serving = anyio.CancelScope()
        self._stopped = anyio.Event()
        self.server_names: list[str | None] = []
        """The SNI name of every TLS handshake, in order (None: the client sent none)."""

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the control host has not served yet; use `async with`")
        return self._port

    @property
    def origin(self) -> str:
        return f"https://{self.name}:{self.port}"

    @property
    def pin(self) -> Pin:
        return Pin(self.name, self.port, LOOPBACK)

    @property
    def network(self) -> ControlNetwork:
        """Client settings that reach this host by name (see the module docstring)."""
        return lab_network(self.pin)

    def env(self) -> dict[str, str]:
        """`network` as the server's environment variables."""
        return {
            "VOX_CONTROL_ALLOW_LOCAL": "1",
            "VOX_CONTROL_RESOLVE": str(self.pin),
            "SSL_CERT_FILE": str(lab_ca().ca_file),
        }

    async def __aenter__(self) -> LoopbackControlHost:
        tls = self._tls or lab_ca().server_context((self.name,))
        tls.sni_callback = self._on_sni
        tcp = await anyio.create_tcp_listener(local_host=LOOPBACK, local_port=0)
        self._port = int(tcp.extra(anyio.abc.SocketAttribute.local_port))
        listener = _QuietTLSListener(tcp, tls, standard_compatible=False)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._serve, listener)
        return self

    async def _serve(self, listener: anyio.abc.Listener[Any]) -> None:
        try:
            with self._serving:
                await listener.serve(self._handler)
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()
            self._stopped.set()

    def start_soon(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run `fn(*args)` in the host's task group (it ends with the host)."""
        if self._task_group is None:
            raise RuntimeError("the control host is not serving; use `async with`")
        self._task_group.start_soon(fn, *args)

    async def stop_listening(self) -> None:
        """From now on nothing listens: open connections are closed, new ones refused."""
        self._serving.cancel()
        await self._stopped.wait()

    def _on_sni(self, connection: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        self.server_names.append(name)

    async def __aexit__(self, *exc_info: object) -> None:
        task_group, self._task_group = self._task_group, None
        if task_group is not None:
            task_group.cancel_scope.cancel()  # stops accepting and ends every handler (hangs too)
            await task_group.__aexit__(None, None, None)


class _QuietTLSListener(TLSListener):
    """A TLS listener that logs failed handshakes (e.g. plain HTTP or untrusted clients) quietly."""

    @staticmethod
    async def handle_handshake_error(exc: BaseException, stream: anyio.abc.AnyByteStream) -> None:
        await anyio.aclose_forcefully(stream)
        if isinstance(exc, anyio.get_cancelled_exc_class()) or not isinstance(exc, Exception):
            raise exc
        log.debug("lab control host: TLS handshake failed: %r", exc)
