"""Opt-in recording of each call's harness traffic (`VOX_RECORD_DIR`), for replay as a timing test.

Every frame of the agent's websocket, both directions, with its millisecond offset from the
moment the socket was accepted, is kept in memory and written when the call ends as
`<dir>/<call_id>.jsonl`: one JSON object a line, first a header, then
`{"ms": <offset>, "dir": "in" | "out", "msg": <the frame>}`. The control URL in the start
message is reduced to its origin (`redact_url`): its path is a bearer secret. Transcripts and
phone numbers stay: a recording is personal data, which is why recording is off by default.

`lab/replay.py` plays a recording's harness side against the current app
(`./dev simulate --replay FILE`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import WebSocket
from loguru import logger

from agent.control_url import redact_url

FORMAT = "vox-line-agent/recording"
VERSION = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def redact_start(message: Any) -> Any:
    """The start message with the control URL (wherever it sits in the metadata) redacted."""
    if not isinstance(message, dict) or not isinstance(message.get("metadata"), dict):
        return message
    return {**message, "metadata": json.loads(redact_url(json.dumps(message["metadata"])))}


class CallRecording:
    """The frames of one call, in memory until `write`."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started = clock()
        self._wall = datetime.now(timezone.utc).isoformat()
        self.call_id: str | None = None
        self.frames: list[dict[str, Any]] = []

    def add(self, direction: str, message: Any) -> None:
        if direction == "in" and not self.frames:  # the first frame in: the start message
            message = redact_start(message)
            if isinstance(message, dict) and isinstance(message.get("call_id"), str):
                self.call_id = message["call_id"]
        self.frames.append(
            {"ms": round((self._clock() - self._started) * 1000, 3), "dir": direction, "msg": message}
        )

    def write(self, directory: Path) -> Path:
        """Write `<directory>/<call_id>.jsonl` (a new name if it exists); returns the path."""
        stem = _UNSAFE.sub("_", self.call_id or "call")[:100] or "call"
        path = directory / f"{stem}.jsonl"
        n = 1
        while path.exists():
            n += 1
            path = directory / f"{stem}-{n}.jsonl"
        header = {"format": FORMAT, "version": VERSION, "started_at": self._wall, "call_id": self.call_id}
        lines = [json.dumps(header), *(json.dumps(f, ensure_ascii=False) for f in self.frames)]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path


class RecordingWebSocket:
    """The app's websocket, with every JSON frame also added to a `CallRecording`. Line's
    `VoiceAgentApp` uses `accept`, `receive_json`, `send_json` and `close`; the rest passes through."""

    def __init__(self, websocket: WebSocket, recording: CallRecording) -> None:
        self._websocket = websocket
        self.recording = recording

    def __getattr__(self, name: str) -> Any:
        return getattr(self._websocket, name)

    @property
    def inner(self) -> WebSocket:
        """The websocket it records (its state is the real one)."""
        return self._websocket

    async def accept(self, *args: Any, **kwargs: Any) -> None:
        await self._websocket.accept(*args, **kwargs)

    async def receive_json(self, *args: Any, **kwargs: Any) -> Any:
        message = await self._websocket.receive_json(*args, **kwargs)
        self.recording.add("in", message)
        return message

    async def send_json(self, data: Any, *args: Any, **kwargs: Any) -> None:
        self.recording.add("out", data)
        await self._websocket.send_json(data, *args, **kwargs)

    async def close(self, *args: Any, **kwargs: Any) -> None:
        await self._websocket.close(*args, **kwargs)


def write_recording(recording: CallRecording, directory: Path) -> None:
    """Write it, or log why not: a recording never breaks a call."""
    try:
        path = recording.write(directory)
    except OSError as exc:
        logger.warning(f"call {recording.call_id}: recording not written ({exc})")
        return
    logger.info(f"call {recording.call_id}: recorded to {path}")
