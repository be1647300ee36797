"""Where a bench app process starts. It imports nothing of the project until `agent_source` is
first on `sys.path`, so the process can run another commit's `agent` package (the levers
section's "before" rows) with this checkout's lab and bench around it."""

from __future__ import annotations

import pickle
import socket
import sys
from multiprocessing.connection import Connection


def main(conn: Connection, agent_source: str | None, options: bytes, sock: socket.socket) -> None:
    if agent_source is not None:
        sys.path.insert(0, agent_source)
    from bench.app_process import child_main

    child_main(conn, pickle.loads(options), sock)
