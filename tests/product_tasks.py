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
    """Tasks running code of the product (agent/, not the lab in lab/, tests or uvicorn).

    Uvicorn's lifespan task passes through our ASGI middleware (agent/gate.py) and lives as long as
    the server, not a call, so it is not counted.
    """
    tasks = []
    for task in asyncio.all_tasks():
        files = list(_code_files(task.get_coro()))
        if any(f.endswith("/uvicorn/lifespan/on.py") for f in files):
            continue
        if any("/agent/" in f and "/lab/" not in f for f in files):
            tasks.append(task)
    return tasks
