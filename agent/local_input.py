"""Turns the agent starts by itself: a check-in after a silence, a goodbye at a time limit, a
keypad entry the caller stopped typing. Nothing comes from the harness then, yet the turn must
run inside Line's `ConversationRunner` like any other (one agent task at a time, the previous one
cancelled, `response_end` after it, the text in Line's history and the harness's playback).

`LocalInput` wraps the call's websocket: Line's receive loop reads the harness's frames through
it, and `inject` adds a `custom` frame of our own to that stream (Line `CustomInput` →
`UserCustomSent`), which the app's run filter recognises by a per-call nonce (`kind_of`) and
hands to the agent. A pump task in the call's scope reads the real socket, so nothing ever
cancels a receive half-way; the frames keep their order, and a receive error (the harness left)
reaches Line as it would have.
"""

from __future__ import annotations

import secrets
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from line.events import InputEvent, UserCustomSent
from starlette.websockets import WebSocketState

from agent.line_wire import CustomInput

MARK = "vox_local"  # the metadata key of our own frames: the kind of turn; "nonce" proves them ours


class LocalInput:
    """The call's websocket as Line reads it, plus the frames the agent injects."""

    def __init__(self, websocket: Any, task_group: TaskGroup) -> None:
        self._websocket = websocket
        self._task_group = task_group
        self._nonce = secrets.token_hex(16)  # a custom event from VoxEngine cannot pass for ours
        self._serial = 0
        self._send: MemoryObjectSendStream[tuple[bool, Any]]
        self._receive: MemoryObjectReceiveStream[tuple[bool, Any]]
        self._send, self._receive = anyio.create_memory_object_stream[tuple[bool, Any]](float("inf"))
        self._pumping = False
        self._error: BaseException | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._websocket, name)

    @property
    def inner(self) -> Any:
        """The real websocket (its state is the one Starlette keeps)."""
        return getattr(self._websocket, "inner", self._websocket)

    async def accept(self, *args: Any, **kwargs: Any) -> None:
        await self._websocket.accept(*args, **kwargs)

    async def send_json(self, data: Any, *args: Any, **kwargs: Any) -> None:
        await self._websocket.send_json(data, *args, **kwargs)

    async def close(self, *args: Any, **kwargs: Any) -> None:
        # Line's runner closes the socket after a send failed because the harness left (line
        # 0.2.19 `VoiceAgentApp` runner); Starlette already marked it DISCONNECTED then, and a
        # close would raise inside Line's task. Nothing is left to close.
        if getattr(self.inner, "application_state", None) == WebSocketState.DISCONNECTED:
            return
        await self._websocket.close(*args, **kwargs)

    async def receive_json(self) -> Any:
        if self._error is not None:
            raise self._error
        if not self._pumping:  # after `accept`: Line reads only then
            self._pumping = True
            self._task_group.start_soon(self._pump)
        ok, value = await self._receive.receive()
        if not ok:
            self._error = value
            raise value
        return value

    def inject(self, kind: str) -> None:
        """Start the agent on a turn of `kind`, through Line's receive loop (never blocks)."""
        self._serial += 1
        frame = CustomInput(
            metadata={MARK: kind, "nonce": self._nonce}, event_id=f"{MARK}-{kind}-{self._serial}"
        )
        self._send.send_nowait((True, frame.model_dump()))

    def kind_of(self, event: InputEvent) -> str | None:
        """The kind of one of our injected turns, or None for anything else."""
        if not isinstance(event, UserCustomSent) or not isinstance(event.metadata, dict):
            return None
        kind = event.metadata.get(MARK)
        ours = isinstance(kind, str) and event.metadata.get("nonce") == self._nonce
        return kind if ours else None

    async def _pump(self) -> None:
        while True:
            try:
                message = await self._websocket.receive_json()
            except Exception as exc:  # the harness left, or a frame is not JSON: Line handles it
                self._send.send_nowait((False, exc))
                return
            self._send.send_nowait((True, message))
