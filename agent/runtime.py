"""How the server process runs: its event loop, HTTP parser, cyclic-GC policy and worker count.

The one place for these choices. Each was measured against its alternatives side by side, same
load, same machine, in the benchmark's "levers" section (`python -m bench`; the latest full run
is in bench/README.md):

- Event loop: uvloop. The app's work is websocket frames and small JSON messages; at 1,000 calls
  on uvloop it took about 1–2 ms less CPU per call (of ~13) than on asyncio's loop, and its p99
  was shorter, in each of the last full runs (bench/README.md).
- HTTP parser: httptools (only the websocket upgrade goes through it; uvicorn's usual choice).
- Cyclic GC: with CPython's defaults, at 1,000 calls a full (generation 2) collection walks every
  object of every call and stops the event loop for hundreds of ms, on every call at once: dead
  air, a hang-up late by as much. `SERVER_GC` freezes what start-up built (LiteLLM, pydantic
  models, Line: never garbage) out of every collection, keeps the young collections as they are
  (small, frequent, a few ms), and defers full collections: one runs after 1,000 young
  generation-1 collections instead of after 10 (none ran within a benchmark round of 1,000
  calls; CPython's defaults ran six). Garbage cycles are still collected, young ones as before,
  old ones later; the benchmark reports the memory it costs.
- Workers: `WEB_CONCURRENCY` processes (default 1) accepting on one socket, as uvicorn's own
  `--workers`. A call lives in one process (its websocket, its control plane), so workers share
  nothing. They spread calls over cores; on a machine without a spare core they add CPU per call
  and do not shorten the tail.

`python main.py` (and `./dev serve`) runs all of this (`agent.server.serve`); the GC policy is
applied by the app's lifespan (`agent.server.create_app`), so every process serving `main:app`
gets it. Plain `uvicorn main:app` picks uvloop and httptools itself when they are installed and
honours `WEB_CONCURRENCY`; SIGTERM drains the calls and a second one exits at once there too
(`agent.drain`). What it gives up is `python main.py`'s `timeout_graceful_shutdown`
(`agent.server`): uvicorn's cancel of whatever is still open once every closed call's bounded flush
had its time.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
from dataclasses import dataclass
from typing import Literal

EventLoop = Literal["uvloop", "asyncio"]
HttpParser = Literal["httptools", "h11"]


@dataclass(frozen=True)
class GcPolicy:
    """What the process does to CPython's cyclic GC once start-up is over."""

    name: str
    freeze: bool = False  # gc.freeze(): everything alive now is out of every later collection
    thresholds: tuple[int, int, int] | None = None  # gc.set_threshold; None keeps (700, 10, 10)
    enabled: bool = True  # False: no cyclic GC at all (cycles leak; a bound in the benchmark)

    def apply(self) -> None:
        """Call once, after start-up (the app imported, its lifespan started)."""
        if self.freeze:
            gc.collect()  # no garbage into the frozen set
            gc.freeze()
        if self.thresholds is not None:
            gc.set_threshold(*self.thresholds)
        if not self.enabled:
            gc.disable()


CPYTHON_GC = GcPolicy("CPython defaults")
FREEZE_GC = GcPolicy("freeze only", freeze=True)
SERVER_GC = GcPolicy("freeze, full GC deferred", freeze=True, thresholds=(700, 10, 1000))
NO_GC = GcPolicy("off", enabled=False)

HTTP_PARSER: HttpParser = "httptools" if importlib.util.find_spec("httptools") else "h11"


def event_loop() -> EventLoop:
    """uvloop where it is installed (a dependency; it does not build on Windows)."""
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def describe_runtime() -> str:
    """What this process actually runs, for the startup log: read back, not assumed."""
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    return (
        f"event loop {loop}, cyclic GC {'on' if gc.isenabled() else 'off'} with thresholds "
        f"{gc.get_threshold()} and {gc.get_freeze_count()} objects frozen"
    )
