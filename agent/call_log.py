"""Each control action's milestones in Cartesia's own call log, next to the conversation.

Line's `LogMessage` / `LogMetric` events become `log_event` / `log_metric` frames on the agent's
websocket, which Cartesia shows in the call's transcript view (Cartesia's observability docs,
"Loggable Events", "Loggable Metrics"). The control plane runs outside the agent's turn, so it
cannot yield them; `CartesiaCallLog` builds the very frames Line builds for them
(`ConversationRunner._map_output_event`: a `LogEventOutput` whose metadata holds `level`,
`message` and `metadata`; a `LogMetricOutput`) and `FrameSender` writes them from the call's scope.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from loguru import logger

from agent.action_events import ActionEvent, Delivered, Released, TelephonyReported, details, step_name
from agent.actions import ControlAction
from agent.call_observer import CallObserver
from agent.line_wire import LogEventOutput, LogMetricOutput

EVENT = "vox_action"
_LOGGED = {  # action event (agent/action_events.py `step_name`) -> what the log line says
    "delivered": "accepted by VoxEngine",
    "failed": "not delivered",
    "cancelled": "cancelled",
    "session_ended": "sent; the VoxEngine session has ended",
    "telephony.ringing": "ringing",
    "telephony.attempt_failed": "attempt failed; dialling the next destination",
    "telephony.connected": "connected",
    "telephony.failed": "did not connect",
    "telephony.completed": "completed: VoxEngine hung up the caller",
}
_ERRORS = ("failed", "telephony.failed")
_BUFFER = 64  # frames waiting for the socket; a call makes a handful


class JsonSocket(Protocol):
    async def send_json(self, data: Any) -> None: ...


async def send_beside_line(socket: JsonSocket, frame: dict[str, Any]) -> bool:
    """Send a frame from outside Line's runner (the call's scope); False when it is lost.

    A send that fails because the harness just left makes Starlette mark the app's side closed
    (`WebSocket.send`: OSError → DISCONNECTED), and Line's receive loop then fails with
    RuntimeError instead of reading the disconnect: no `CallEnded`, and the call's end is never
    reported. Our frame is only lost, so the state is put back for Line to end the call cleanly.
    """
    owner: Any = getattr(socket, "inner", socket)  # a RecordingWebSocket wraps the real one
    state = getattr(owner, "application_state", None)
    try:
        await socket.send_json(frame)
    except Exception:
        if state is not None:
            owner.application_state = state
        return False
    return True


class FrameSender:
    """Frames for the agent's websocket, queued synchronously and written in order by `run`."""

    def __init__(self) -> None:
        self._send: MemoryObjectSendStream[dict[str, Any]]
        self._receive: MemoryObjectReceiveStream[dict[str, Any]]
        self._send, self._receive = anyio.create_memory_object_stream[dict[str, Any]](_BUFFER)

    def send(self, frame: dict[str, Any]) -> None:
        try:
            self._send.send_nowait(frame)
        except (anyio.WouldBlock, anyio.ClosedResourceError):
            logger.debug("call log frame dropped")

    async def run(self, socket: JsonSocket) -> None:
        """Write queued frames until `close`; a closed socket only ends the writing."""
        async with self._receive:
            async for frame in self._receive:
                await send_beside_line(socket, frame)  # the harness may have closed the socket

    def close(self) -> None:
        self._send.close()


class CartesiaCallLog(CallObserver):
    """Action milestones as `log_event` frames, and per accepted action its attempts, the dead
    air between its release (the confirming turn's end) and VoxEngine's acceptance, and the
    playout offset VoxEngine reported with its outcome (`vox_playout_offset_ms`)."""

    def __init__(self, frames: FrameSender) -> None:
        self._frames = frames
        self._released: dict[str, float] = {}

    def action_event(self, action: ControlAction, event: ActionEvent, at: float) -> None:
        if isinstance(event, Released) and event.reason == "turn_ended":
            self._released[action.id] = at
        name = step_name(event)
        if name not in _LOGGED:
            return
        level: Literal["info", "error"] = "error" if name in _ERRORS else "info"
        known = details(event)
        message = (
            f"{action.kind.name} {_LOGGED[name]}"
            + (f" ({known['reason']})" if "reason" in known else "")
            + (f" [{known['destination']}]" if "destination" in known else "")
        )
        metadata = {"id": action.id, "action": action.kind.name, "event": name, **known}
        self._frames.send(
            LogEventOutput(
                event=EVENT, metadata={"level": level, "message": message, "metadata": metadata}
            ).model_dump()
        )
        # Where the effect fell against the end of the agent's audio at VoxEngine; VoxEngine's
        # null stays "unknown" in the event above and gives no metric (never a 0).
        if isinstance(event, TelephonyReported):
            self._metric("vox_playout_offset_ms", event.playout_offset_ms)
        if isinstance(event, Delivered):
            self._metric("vox_action_attempts", event.attempts)
            released = self._released.pop(action.id, None)
            if released is not None:
                self._metric("vox_action_dead_air_ms", round((at - released) * 1000, 1))

    def _metric(self, name: str, value: object) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            self._frames.send(LogMetricOutput(name=name, value=value).model_dump())
