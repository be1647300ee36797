"""Shared pieces of the hardening suite: an LLM-free agent that runs our real telephony tools,
a loopback-only connection guard, a counting listener, a raw harness client, a recorder of the
harness events the app observed, log capture and a bounded condition poll."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import h11
from line.events import (
    InputEvent,
)
from loguru import logger
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from agent.call_observer import CallInfo, CallObserver
from lab.control_host import LoopbackControlHost
from lab.harness import start_message
from lab.keyword_agent import keyword_agent_factory
from lab.tts_model import TtsModel
from lab.voxengine_emulator import next_h11_event

# Speech that starts at once and plays 40 words a second: calls in this suite take milliseconds
# of speech, while the order of events (speaking, words, idle) stays exactly as in production.
FAST_TTS = TtsModel(first_audio_s=0.02, words_per_s=40)

# ---------------------------------------------------------------------------------------------
# An LLM-free agent.
#
# LiteLLM costs tens of milliseconds of CPU per completion on this machine, and the load, leak and
# fault tests are about the path harness -> Line -> control plane -> POST, not about the model.
# This agent answers each caller turn the way our LlmAgent would after a tool call: it runs the
# *real* tool functions from `agent.tools.telephony_tools(control)` (so the action is held by the
# real CallControl, the confirmation is the real one) and reports the tool call like LlmAgent.
# ---------------------------------------------------------------------------------------------

INTRO_TEXT = "Hello there."
CHAT_REPLY = "Our hours are nine to five."
CLOSING_LINE = "Thanks for calling. Goodbye!"

tool_agent = keyword_agent_factory(chat_reply=CHAT_REPLY, introduction=INTRO_TEXT, closing_line=CLOSING_LINE)


# ---------------------------------------------------------------------------------------------
# Harness events as the app observed them (a sync point: "the app has processed message N").
# ---------------------------------------------------------------------------------------------


@dataclass
class HarnessEventLog:
    """Every harness event each call's control plane observed, in order (CallObserver hook)."""

    events: dict[str, list[str]] = field(default_factory=dict)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    def factory(self, call: CallInfo) -> CallObserver:
        log = self
        names = self.events.setdefault(call.call_id, [])

        class _Observer(CallObserver):
            def harness_event(self, event: InputEvent, at: float) -> None:
                names.append(type(event).__name__)
                log._notify()

        return _Observer()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_until(
        self, call_id: str, predicate: Callable[[list[str]], bool], *, timeout_s: float = 10.0
    ) -> list[str]:
        """Wait until the events the app observed for `call_id` satisfy `predicate`."""
        with anyio.fail_after(timeout_s):
            while not predicate(self.events.get(call_id, [])):
                await self._changed.wait()
        return list(self.events[call_id])

    async def wait_marker(self, call_id: str, n: int, *, timeout_s: float = 10.0) -> list[str]:
        """Wait until the app observed the `n`th DTMF of `call_id`.

        Line handles a socket's frames one at a time, in order: once the DTMF sent after some
        frames was observed, every frame before it was processed too. (DTMF never runs the agent.)
        """
        return await self.wait_until(
            call_id, lambda names: names.count("UserDtmfSent") >= n, timeout_s=timeout_s
        )


# ---------------------------------------------------------------------------------------------
# Loopback only (the `connect_guard` fixture in conftest.py): every outgoing connection of this
# process is recorded, and any destination that is not 127.0.0.1 is refused before anything
# leaves, so no test reaches the outside world even when the product under test has a bug.
# ---------------------------------------------------------------------------------------------


@dataclass
class ConnectGuard:
    attempts: list[tuple[Any, ...]] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)

    def to_port(self, port: int) -> list[tuple[Any, ...]]:
        return [a for a in self.attempts if len(a) >= 2 and a[1] == port]

    def off_loopback(self) -> list[tuple[Any, ...]]:
        return [a for a in self.attempts if not (len(a) >= 2 and a[0] == "127.0.0.1")]


class CountingListener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts (and answers nothing)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0
        self._listener: Any = None
        self._tg: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> CountingListener:
        self._listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = int(self._listener.extra(anyio.abc.SocketAttribute.local_port))
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._listener.serve, self._handle)
        return self

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        self.accepted += 1
        await stream.aclose()

    async def __aexit__(self, *exc: object) -> None:
        assert self._tg is not None and self._listener is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        await self._listener.aclose()


# ---------------------------------------------------------------------------------------------
# A raw harness: any frame, in any order, and everything the app answers.
# ---------------------------------------------------------------------------------------------


class RawHarness:
    """A websocket client that sends exactly what it is told and records every frame received."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[Any] = []
        self.close_code: int | None = None
        self.closed = anyio.Event()
        self._changed = anyio.Event()
        self._ids = itertools.count(1)

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        ws_url: str,
        *,
        start: Any = None,
        raw_start: str | bytes | None = None,
        metadata: Any = None,
        call_id: str = "raw-call",
    ) -> AsyncIterator[RawHarness]:
        """Connect and send the start frame: `raw_start` as is, else `start` (JSON), else a
        well-formed start message carrying `metadata` (any JSON value)."""
        with anyio.fail_after(10):
            ws = await ws_connect(ws_url, open_timeout=10, max_size=None)
        harness = cls(ws)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(harness._receive_loop)
                if raw_start is not None:
                    await ws.send(raw_start)
                elif start is not None:
                    await ws.send(json.dumps(start))
                else:
                    message = start_message(call_id=call_id)
                    message["metadata"] = metadata if metadata is not None else {}
                    await ws.send(json.dumps(message))
                try:
                    yield harness
                finally:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                        await ws.close()
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await ws.close()

    async def _receive_loop(self) -> None:
        try:
            async for frame in self.ws:
                try:
                    self.received.append(json.loads(frame))
                except ValueError:
                    self.received.append({"type": "<not json>", "raw": str(frame)[:200]})
                self._notify()
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.protocol.close_code
            self.closed.set()
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def next_id(self) -> str:
        return f"raw-{next(self._ids)}"

    async def send(self, message: Any) -> None:
        await self.ws.send(json.dumps(message))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def agent_state(self, value: str) -> None:
        await self.send({"type": "agent_state", "value": value, "event_id": self.next_id()})

    async def user_state(self, value: str) -> None:
        await self.send({"type": "user_state", "value": value, "event_id": self.next_id()})

    async def transcript(self, text: str) -> None:
        await self.send({"type": "message", "content": text, "event_id": self.next_id()})

    async def marker(self) -> None:
        """A DTMF frame: see `HarnessEventLog.wait_marker`."""
        await self.send({"type": "dtmf", "button": "#", "event_id": self.next_id()})

    async def user_turn(self, text: str) -> str:
        """speaking, transcript, idle; returns the idle's event id (the app's `responding_to`)."""
        await self.user_state("speaking")
        await self.transcript(text)
        idle = self.next_id()
        await self.send({"type": "user_state", "value": "idle", "event_id": idle})
        return idle

    def of_type(self, kind: str) -> list[Any]:
        return [m for m in self.received if isinstance(m, dict) and m.get("type") == kind]

    def texts(self) -> list[str]:
        return [str(m.get("content")) for m in self.of_type("message")]

    async def wait_for(self, predicate: Callable[[Any], bool], *, timeout_s: float = 10.0) -> Any:
        """The first received frame matching `predicate`, once it arrived."""
        with anyio.fail_after(timeout_s):
            while True:
                for message in self.received:
                    if predicate(message):
                        return message
                if self.closed.is_set():
                    raise AssertionError(f"socket closed ({self.close_code}); got {self.received!r:.2000}")
                await self._changed.wait()

    async def wait_response_end(self, responding_to: str, *, timeout_s: float = 10.0) -> Any:
        return await self.wait_for(
            lambda m: (
                isinstance(m, dict)
                and m.get("type") == "response_end"
                and m.get("responding_to") == responding_to
            ),
            timeout_s=timeout_s,
        )

    async def wait_closed(self, *, timeout_s: float = 10.0) -> int | None:
        with anyio.fail_after(timeout_s):
            await self.closed.wait()
        return self.close_code


# ---------------------------------------------------------------------------------------------
# Logs, file descriptors, polling.
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def captured_logs(level: str = "DEBUG") -> Iterator[list[str]]:
    """Every loguru message (after the app's redaction patcher) while the block runs."""
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level=level, format="{level} {message}")
    try:
        yield lines
    finally:
        logger.remove(sink)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def eventually(
    predicate: Callable[[], bool], *, timeout_s: float, what: str, poll_s: float = 0.01
) -> None:
    """Poll `predicate` until it holds; fail (not pass) when it does not within `timeout_s`.

    For state no event reports (task counts, descriptors, uvicorn's connection bookkeeping).
    """
    with anyio.move_on_after(timeout_s):
        while not predicate():  # noqa: ASYNC110  (nothing reports this state: poll it, bounded)
            await anyio.sleep(poll_s)
    assert predicate(), f"timed out after {timeout_s}s waiting for {what}"


class HostileControlServer:
    """A control endpoint that answers what no VoxEngine would, chosen by path, served like the
    lab's VoxEngine (HTTPS under a VoxEngine-shaped name on 127.0.0.1, `LoopbackControlHost`):

    - ``/request/redirect-<status>/<token>``: ``<status>`` with ``Location`` set to ``redirect_to``;
    - ``/request/huge/<token>``: 200 with an endless chunked body;
    - ``/request/huge-length/<token>``: 200 declaring a 10 GB ``Content-Length``, then streaming;
    - anything else (the warm-up ``HEAD /``): ``root_status`` (a redirect to ``redirect_to``), or 404.

    ``body_bytes_sent`` counts body bytes the server managed to write; ``streams_ended`` counts
    body streams that stopped because the client closed the connection.
    """

    def __init__(self, redirect_to: str = "", root_status: int | None = None) -> None:
        self.redirect_to = redirect_to
        self.root_status = root_status
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.body_bytes_sent = 0
        self.streams_ended = 0
        self._changed = anyio.Event()
        self.host = LoopbackControlHost(self._handle)

    def url(self, mode: str, token: str = "tok") -> str:
        return f"{self.host.origin}/request/{mode}/{token}"

    async def __aenter__(self) -> HostileControlServer:
        await self.host.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.host.__aexit__(*exc)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_streams_ended(self, n: int, *, timeout_s: float) -> None:
        with anyio.fail_after(timeout_s):
            while self.streams_ended < n:
                await self._changed.wait()

    async def _handle(self, stream: anyio.abc.ByteStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            try:
                while True:
                    request = await next_h11_event(conn, stream)
                    if not isinstance(request, h11.Request):
                        return
                    while not isinstance(
                        await next_h11_event(conn, stream), (h11.EndOfMessage, h11.ConnectionClosed)
                    ):
                        pass
                    method = request.method.decode()
                    path = request.target.decode("latin-1")
                    self.requests.append((method, path))
                    self._notify()
                    parts = path.split("/")
                    mode = parts[2] if len(parts) > 3 and parts[1] == "request" else ""
                    if path == "/" and self.root_status is not None:
                        mode = f"redirect-{self.root_status}"
                    if mode.startswith("redirect-"):
                        status = int(mode.removeprefix("redirect-"))
                        head = [("Location", self.redirect_to), ("Content-Length", "0")]
                        await stream.send(conn.send(h11.Response(status_code=status, headers=head)) or b"")
                        await stream.send(conn.send(h11.EndOfMessage()) or b"")
                    elif mode in ("huge", "huge-length"):
                        await self._stream_forever(conn, stream, declared=mode == "huge-length")
                        return
                    else:
                        head = [("Content-Length", "0")]
                        await stream.send(conn.send(h11.Response(status_code=404, headers=head)) or b"")
                        await stream.send(conn.send(h11.EndOfMessage()) or b"")
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError):
                return

    async def _stream_forever(self, conn: Any, stream: anyio.abc.ByteStream, *, declared: bool) -> None:
        length = [("Content-Length", str(10 * 1024**3))] if declared else []
        head = [("Content-Type", "application/json"), *length]
        await stream.send(conn.send(h11.Response(status_code=200, headers=head)) or b"")
        chunk = b"{" + b'"x":"' + b"a" * 65_000 + b'",'
        try:
            while self.body_bytes_sent < 512 * 1024 * 1024:  # a runaway client still ends the test
                await stream.send(conn.send(h11.Data(data=chunk)) or b"")
                self.body_bytes_sent += len(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.streams_ended += 1
            self._notify()
