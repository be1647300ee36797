"""Which asyncio tasks run the product's own code, for "no task outlives its call" checks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator


def _code_files(awaitable: object) -> Iterator[str]:
    # Follow the await chain: anyio wraps each task's coroutine in its own.
    while awaitable is not None:
        code = getattr(awaitable, "cr_code", None) or getattr(awaitable, "ag_code", None)
        if code is not None:
            yield code.co_filename
        awaitable = getattr(awaitable, "cr_await", None)


def product_tasks() -> list[asyncio.Task[object]]:
    """Tasks running code of the product (agent/, not the lab in lab/, tests or uvicorn)."""
    return [
        task
        for task in asyncio.all_tasks()
        if any("/agent/" in f and "/lab/" not in f for f in _code_files(task.get_coro()))
    ]
