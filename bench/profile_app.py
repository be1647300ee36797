"""`python -m bench.profile_app [--calls N] [--tracing]`: where the app's CPU goes under load.

One app process as in section 2 (warmed up, the shipped runtime, optionally traced with spans
exported over OTLP to a receiver on 127.0.0.1) plays one round of N calls under cProfile (the
event-loop thread; the exporter's thread is not profiled). Prints the profiled time by package
and the project's own functions that take the most. cProfile slows Python code more than C
code, so read the shares, not the milliseconds.
"""

from __future__ import annotations

import argparse
import pstats
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import anyio

from bench.app_process import AppOptions
from bench.config import FULL
from bench.load import LoadShape, play_round, wait_drained, warmed_app
from bench.progress import quiet_logs
from bench.world import World, generators_for
from lab.otlp_receiver import OtlpReceiver

# Path fragments → package, first match wins; "C builtins" are cProfile's "~" entries.
PACKAGES = (
    ("/agent/", "ours: agent"),
    ("/telemetry/", "ours: telemetry"),
    ("/line/", "Line"),
    ("/websockets/", "websockets"),
    ("/uvicorn/", "uvicorn"),
    ("/starlette/", "starlette"),
    ("/anyio/", "anyio"),
    ("/asyncio/", "asyncio"),
    ("/httpx/", "httpx"),
    ("/httpcore/", "httpcore"),
    ("/h11/", "h11"),
    ("/opentelemetry/", "opentelemetry"),
    ("/pydantic", "pydantic"),
    ("/json/", "json"),
    ("/loguru/", "loguru"),
)
OURS = ("/agent/", "/telemetry/")


def package_of(filename: str) -> str:
    if filename.startswith("~") or filename.startswith("<"):
        return "C builtins"
    return next((name for fragment, name in PACKAGES if fragment in filename), "other")


def report(stats: pstats.Stats, top: int = 15) -> list[str]:
    by_package: defaultdict[str, float] = defaultdict(float)
    ours: list[tuple[float, int, str]] = []
    raw = stats.stats  # type: ignore[attr-defined]  # pstats keeps its table untyped
    for (filename, line, function), (_, calls, own, _, _) in raw.items():
        by_package[package_of(filename)] += own
        if any(fragment in filename for fragment in OURS):
            where = filename.split("/work/")[-1] if "/work/" in filename else filename
            ours.append((own, calls, f"{Path(where).parent.name}/{Path(where).name}:{line} {function}"))
    total = sum(by_package.values()) or 1.0
    lines = ["profiled time by package (event-loop thread):"]
    for name, own in sorted(by_package.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {100 * own / total:5.1f}%  {name}")
    lines.append(f"the project's own functions, top {top} by own time:")
    for own, calls, where in sorted(ours, reverse=True)[:top]:
        lines.append(f"  {100 * own / total:5.2f}%  {calls:8d} calls  {where}")
    return lines


async def profile(calls: int, tracing: bool, path: str) -> None:
    with OtlpReceiver(decode=False) as sink:
        async with World(generators_for(calls, FULL.calls_per_generator, FULL.max_generators)) as world:
            options = AppOptions(otlp_endpoint=sink.endpoint if tracing else None, profile_path=path)
            async with warmed_app(options, world, 20) as app:
                shape = LoadShape(calls=calls, spread_s=12.0)
                await play_round(app, world, shape, tag="profile", seed=1)
                await wait_drained(app)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile_app", description=__doc__)
    p.add_argument("--calls", type=int, default=300, help="concurrent calls in the round (default 300)")
    p.add_argument("--tracing", action="store_true", help="tracing on, exported over OTLP")
    args = p.parse_args(argv)
    quiet_logs()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "app.pstats")
        anyio.run(profile, args.calls, args.tracing, path)  # the stats are written as the app stops
        print("\n".join(report(pstats.Stats(path))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
