"""LocalInput's close, when Line's runner closes a socket the harness already left."""

from typing import Any

import anyio
import pytest
from starlette.websockets import WebSocketState

from agent.local_input import LocalInput

pytestmark = pytest.mark.anyio


class _Socket:
    """The two members of Starlette's WebSocket that `close` touches; Starlette raises
    RuntimeError on a close after the app side is DISCONNECTED (starlette/websockets.py `send`)."""

    def __init__(self, state: WebSocketState) -> None:
        self.application_state = state
        self.closed = 0

    async def close(self, *args: Any, **kwargs: Any) -> None:
        if self.application_state == WebSocketState.DISCONNECTED:
            raise RuntimeError('Cannot call "send" once a close message has been sent.')
        self.closed += 1
        self.application_state = WebSocketState.DISCONNECTED


async def test_closing_a_socket_the_harness_left_is_a_no_op_and_an_open_one_closes() -> None:
    async with anyio.create_task_group() as tg:
        gone, live = _Socket(WebSocketState.DISCONNECTED), _Socket(WebSocketState.CONNECTED)
        await LocalInput(gone, tg).close()
        await LocalInput(live, tg).close()
    assert (gone.closed, live.closed) == (0, 1)
