"""A scripted, OpenAI-compatible chat-completions endpoint on loopback.

The real Line ``LlmAgent`` (LiteLLM → OpenAI SDK) runs unchanged against it: build the agent
with ``model="openai/<anything>"`` and ``LlmConfig(extra={"api_base": llm.api_base})``. LiteLLM
then sends ``POST <api_base>/chat/completions`` (so ``/v1/chat/completions``) with
``"stream": true`` and parses Server-Sent Events: one ``chat.completion.chunk`` object per
``data:`` line, terminated by ``data: [DONE]``.

Replies are consumed in order, one per chat-completions request; a reply with
``when_user_says`` is only eligible when the last user message contains that text. When no
scripted reply is eligible, ``default`` (or an empty ``stop``) answers.

The server is a small Starlette app on ``uvicorn.Server`` in the current event loop. It is driven
through ``startup()`` and a local shutdown rather than ``serve()``, so it installs no signal
handlers, touches no global logging configuration and stops without uvicorn's 100 ms polling.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["LlmReply", "ScriptedLlm", "ToolCallSpec"]


@dataclass(frozen=True)
class ToolCallSpec:
    """One tool call the scripted model makes."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class LlmReply:
    """One scripted model reply.

    ``text`` is streamed in word-sized chunks (leading whitespace kept, so the chunks concatenate
    to ``text`` exactly); ``tool_calls`` follow the OpenAI way (id and name first, then the JSON
    arguments in pieces, then ``finish_reason: "tool_calls"``). ``first_token_delay_s`` is slept
    before the first chunk (after the response headers, like a real provider), ``chunk_delay_s``
    between chunks. ``when_user_says`` (case-insensitive substring of the last user message)
    makes the reply eligible only for matching requests.
    """

    text: str = ""
    tool_calls: tuple[ToolCallSpec, ...] = ()
    first_token_delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    when_user_says: str | None = None


_EMPTY = LlmReply()
_WORD = re.compile(r"\s*\S+")


def split_text(text: str) -> list[str]:
    """Split ``text`` into word-sized chunks whose concatenation is ``text``."""
    pieces = _WORD.findall(text)
    if not pieces:
        return [text] if text else []
    tail = text[sum(map(len, pieces)) :]
    pieces[-1] += tail
    return pieces


def _split_arguments(arguments: str, parts: int = 3) -> list[str]:
    size = max(1, -(-len(arguments) // parts))
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


def _last_user_text(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
                )
            return ""
    return ""


class ScriptedLlm:
    """Serve scripted chat completions on ``127.0.0.1:<ephemeral>``; use as ``async with``.

    Attributes:
        requests: every chat-completions request body received, in arrival order.
        served: the reply used for each request (parallel to ``requests``).
    """

    def __init__(self, replies: Sequence[LlmReply], *, default: LlmReply | None = None) -> None:
        self._pending: list[LlmReply] = list(replies)
        self._default = default if default is not None else _EMPTY
        self.requests: list[dict[str, Any]] = []
        self.served: list[LlmReply] = []
        self._server: uvicorn.Server | None = None
        self._port: int | None = None
        self._closing: anyio.Event | None = None
        self._arrived: anyio.Event | None = None
        self._app = Starlette(
            routes=[
                Route(path, self._chat, methods=["POST"])
                for path in ("/v1/chat/completions", "/chat/completions")
            ]
            + [Route(path, self._models, methods=["GET"]) for path in ("/v1/models", "/models")]
        )

    @property
    def api_base(self) -> str:
        """``http://127.0.0.1:<port>/v1`` — pass as LiteLLM's ``api_base``."""
        if self._port is None:
            raise RuntimeError("ScriptedLlm is not serving; use `async with`")
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def remaining(self) -> int:
        """Scripted replies not consumed yet."""
        return len(self._pending)

    async def __aenter__(self) -> ScriptedLlm:
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            log_config=None,  # leave the process' logging (and the agent's uvicorn loggers) alone
            log_level=None,
            access_log=False,
        )
        config.load()
        self._closing = anyio.Event()
        self._arrived = anyio.Event()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup()
        sockets = server.servers[0].sockets
        self._port = int(sockets[0].getsockname()[1])
        self._server = server
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        assert self._closing is not None
        self._closing.set()  # scripted delays end at once; streams finish early
        for listener in server.servers:
            listener.close()
        for connection in list(server.server_state.connections):
            connection.shutdown()  # closes idle keep-alive connections, or after the response
        tasks = list(server.server_state.tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        for listener in server.servers:
            await listener.wait_closed()
        self._port = None

    async def wait_for_requests(self, n: int, *, timeout: float) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Wait until ``n`` chat-completions requests arrived; raises ``TimeoutError``."""
        with anyio.fail_after(timeout):
            while len(self.requests) < n:
                if self._arrived is None:
                    raise RuntimeError("ScriptedLlm is not serving; use `async with`")
                await self._arrived.wait()
        return list(self.requests)

    def _pick(self, body: dict[str, Any]) -> LlmReply:
        said = _last_user_text(body).casefold()
        for i, reply in enumerate(self._pending):
            if reply.when_user_says is None or reply.when_user_says.casefold() in said:
                return self._pending.pop(i)
        return self._default

    async def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless shutting down; False when shutting down."""
        closing = self._closing
        if closing is None:
            return False
        if seconds > 0:
            with anyio.move_on_after(seconds):
                await closing.wait()
        return not closing.is_set()

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    async def _chat(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            error = {"message": "request body must be a JSON object", "type": "invalid_request_error"}
            return JSONResponse({"error": error}, status_code=400)
        self.requests.append(body)
        reply = self._pick(body)
        self.served.append(reply)
        if self._arrived is not None:
            self._arrived.set()
            self._arrived = anyio.Event()
        number = len(self.requests)
        model = str(body.get("model", "scripted"))
        if body.get("stream"):
            options = body.get("stream_options")
            usage = isinstance(options, dict) and bool(options.get("include_usage"))
            return StreamingResponse(
                self._stream(reply, number, model, usage),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        await self._pause(reply.first_token_delay_s)
        return JSONResponse(_completion(reply, number, model))

    async def _stream(self, reply: LlmReply, number: int, model: str, usage: bool) -> AsyncIterator[bytes]:
        head = {"id": f"chatcmpl-scripted-{number}", "created": int(time.time()), "model": model}
        deltas: list[dict[str, Any]] = [{"content": piece} for piece in split_text(reply.text)]
        for index, call in enumerate(reply.tool_calls):
            first = {"index": index, "id": _call_id(number, index), "type": "function"}
            deltas.append({"tool_calls": [{**first, "function": {"name": call.name, "arguments": ""}}]})
            for piece in _split_arguments(json.dumps(call.arguments)):
                deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        if not deltas:
            deltas.append({"content": ""})
        deltas[0] = {"role": "assistant", **deltas[0]}

        if not await self._pause(reply.first_token_delay_s):
            return
        for i, delta in enumerate(deltas):
            if i and not await self._pause(reply.chunk_delay_s):
                return
            yield _sse({**head, "object": "chat.completion.chunk", "choices": [_choice(delta, None)]})
        finish = "tool_calls" if reply.tool_calls else "stop"
        yield _sse({**head, "object": "chat.completion.chunk", "choices": [_choice({}, finish)]})
        if usage:
            yield _sse({**head, "object": "chat.completion.chunk", "choices": [], "usage": _usage(reply)})
        yield b"data: [DONE]\n\n"


def _call_id(number: int, index: int) -> str:
    return f"call_scripted_{number}_{index}"


def _choice(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _usage(reply: LlmReply) -> dict[str, int]:
    completion = len(split_text(reply.text)) + 4 * len(reply.tool_calls)
    return {"prompt_tokens": 1, "completion_tokens": completion, "total_tokens": completion + 1}


def _completion(reply: LlmReply, number: int, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": _call_id(number, i),
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for i, call in enumerate(reply.tool_calls)
        ]
    return {
        "id": f"chatcmpl-scripted-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if reply.tool_calls else "stop",
            }
        ],
        "usage": _usage(reply),
    }
