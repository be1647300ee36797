"""The connection layer of the control client: every TCP connection to a control host is
resolved, checked and connected here, and only here.

httpx resolves a host name itself for each new connection, after (and apart from) any check of
the URL, so a name that answered a public address when checked could answer 127.0.0.1 when
connected (DNS rebinding). The pooled client's transport (`GuardedTransport`, an
`httpx.AsyncBaseTransport`) therefore sends through an `httpcore.AsyncConnectionPool` whose
connections open through `GuardedNetworkBackend` (both public httpx/httpcore APIs), which for
each new connection:

1. resolves the name once: a `VOX_CONTROL_RESOLVE` pin (labs only) or the system resolver;
2. refuses it when any address is local (`agent.control_url.is_local_address`), unless the
   network allows local addresses (`VOX_CONTROL_ALLOW_LOCAL=1`, labs and tests);
3. connects to the address it checked, never to the name.

httpcore then upgrades the stream to TLS with `server_hostname` = the URL's host, so SNI and
certificate verification are for the name, as with any HTTPS client; the trust store is
certifi's, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when set. Proxy variables are ignored and
redirects are never followed: the URL's path is a bearer secret. The warm-up connection (HEAD /)
goes through the same client, so the same layer.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import certifi
import httpcore
import httpx

from agent.control_url import DEFAULT_ALLOWED_HOSTS, is_ip_literal, is_local_address

# host, port -> addresses, in the order to try them.
Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True)
class Pin:
    """A curl-style `--resolve host:port:address` entry: connect `host:port` to `address`."""

    host: str
    port: int
    address: str

    def __str__(self) -> str:
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.host}:{self.port}:{address}"


@dataclass(frozen=True)
class ControlNetwork:
    """Where control requests may go and how they connect (see the module docstring)."""

    allowed_hosts: tuple[str, ...] = DEFAULT_ALLOWED_HOSTS
    allow_local: bool = False
    resolve: tuple[Pin, ...] = ()
    ssl_cert_file: str | None = None
    ssl_cert_dir: str | None = None


class ControlConnectError(httpcore.ConnectError):
    """A connection this layer would not (or could not) open; `reason` is a short code."""

    def __init__(self, reason: str, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of `host` from the system resolver, in its order, without repeats."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend: resolve once, check every address, connect to a checked one."""

    def __init__(
        self,
        network: ControlNetwork,
        *,
        resolver: Resolver = system_resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._allow_local = network.allow_local
        self._pins = {(pin.host, pin.port): pin.address for pin in network.resolve if network.allow_local}
        self._resolver = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def resolve(self, host: str, port: int, timeout_s: float | None = None) -> list[str]:
        """The checked addresses for one new connection to `host:port`."""
        host = host.strip("[]")
        pinned = self._pins.get((host.lower(), port))
        if pinned is not None:
            addresses = [pinned]
        elif is_ip_literal(host):
            addresses = [host]
        else:
            try:
                with anyio.fail_after(timeout_s):
                    addresses = await self._resolver(host, port)
            except TimeoutError:
                raise ControlConnectError(
                    "dns_error", f"resolving {host} timed out", retryable=True
                ) from None
            except OSError as exc:
                raise ControlConnectError(
                    "dns_error", f"cannot resolve {host}: {exc}", retryable=True
                ) from exc
        if not addresses:
            raise ControlConnectError("dns_error", f"{host} has no address", retryable=True)
        if not self._allow_local and any(is_local_address(a) for a in addresses):
            raise ControlConnectError(
                "local_address_not_allowed", f"{host} resolves to a local address", retryable=False
            )
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self.resolve(host, port, timeout)
        failure: Exception | None = None
        for address in addresses:  # each one checked above; the name is never looked up again
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise ControlConnectError("unix_socket_not_allowed", "control requests use TCP", retryable=False)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


def trust_store(network: ControlNetwork) -> ssl.SSLContext:
    """The TLS context for control hosts: `SSL_CERT_FILE` / `SSL_CERT_DIR` when set (as OpenSSL
    and most HTTP clients read them), else certifi's bundle. Raises `ssl.SSLError`/`OSError` for
    a file that does not load."""
    if network.ssl_cert_file or network.ssl_cert_dir:
        return ssl.create_default_context(cafile=network.ssl_cert_file, capath=network.ssl_cert_dir)
    return ssl.create_default_context(cafile=certifi.where())


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore pool whose connections open through
    `GuardedNetworkBackend`. httpx's own `AsyncHTTPTransport` takes no network backend, so this
    does what it does (httpx 0.28 `_transports/default.py`): map the request to httpcore's, the
    response back, and httpcore's errors to httpx's, the original kept as `__cause__`."""

    def __init__(
        self,
        network: ControlNetwork,
        *,
        limits: httpx.Limits | None = None,
        resolver: Resolver = system_resolver,
        tls: ssl.SSLContext | None = None,  # default: `trust_store(network)`
    ) -> None:
        limits = limits or httpx.Limits()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls or trust_store(network),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetworkBackend(network, resolver=resolver),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("the control client is async: its request bodies are async streams")
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        if not isinstance(response.stream, AsyncIterable):
            raise TypeError("httpcore's async pool answered with a sync stream")
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


class _ResponseStream(httpx.AsyncByteStream):
    """A response body read from httpcore, its errors raised as httpx's."""

    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)  # httpcore's streams have one
        if close is not None:
            await close()


# httpcore's errors and httpx's, most specific first (the first match wins).
_HTTPX_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core_error, httpx_error in _HTTPX_ERRORS:
            if isinstance(exc, core_error):
                raise httpx_error(str(exc)) from exc  # retry_policy reads the cause's reason
        raise


def make_control_client(
    network: ControlNetwork, *, max_connections: int = 1000, resolver: Resolver = system_resolver
) -> httpx.AsyncClient:
    """The process-wide pooled client for control requests (keep-alive, no redirects, no proxies)."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=120
    )
    return httpx.AsyncClient(
        transport=GuardedTransport(network, limits=limits, resolver=resolver),
        follow_redirects=False,  # a redirect could carry the bearer URL elsewhere
        trust_env=False,  # no proxies from the environment: the path is a secret
    )
