"""The outside world of the load sections, in processes of its own: `generators` worker
processes (`bench.generator`), each serving a VoxEngine emulator and playing its share of each
round's harness simulators (call i goes to generator i mod K); with LLM replies, generator 0
also serves the scripted LLM. The app under test runs in another process (`bench.app_process`),
so the world's event loops never stand in the app's way, and the world is split so none of its
loops is the bottleneck (issue 19: one process playing 1,000 calls and the emulator was).

The app reaches every emulator by name through the production connection layer: `network`
merges their pins (`VOX_CONTROL_RESOLVE`) and trusts each one's lab CA (one PEM bundle).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio

from agent.control_transport import ControlNetwork
from bench.child import ChildProcess
from bench.generator import GeneratorRound, RoundPlan, generator_main
from lab.faults import FaultPlan
from lab.scripted_llm import LlmReply

STEP_TIMEOUT_S = 600.0  # a round's step (all connected, all done) at the largest load


def generators_for(calls: int, per_generator: int, most: int) -> int:
    """How many generator processes play `calls` at most `per_generator` each (at most `most`)."""
    return max(1, min(most, math.ceil(calls / per_generator)))


class Generator(ChildProcess):
    """One generator process; once started, what it serves: its emulator's network and origin,
    and the scripted LLM's URL (generator 0, with replies)."""

    def __init__(self, n: int, faults: FaultPlan | None, replies: list[LlmReply] | None) -> None:
        super().__init__(generator_main, (faults, replies), f"bench-world-{n}")
        self.network = ControlNetwork()
        self.origin = ""
        self.llm_api_base: str | None = None

    async def start(self) -> Any:
        ready = await super().start()
        self.network, self.origin, self.llm_api_base = ready
        return ready


class World:
    """`async with World(generators) as world:` → `world.network` (for the app's settings),
    `world.llm_api_base` (with `replies`), `await world.play(plans, on_start)`."""

    def __init__(
        self, generators: int, *, faults: FaultPlan | None = None, replies: Sequence[LlmReply] | None = None
    ) -> None:
        if generators < 1:
            raise ValueError(f"generators must be ≥ 1, not {generators}")
        self.generators = [
            # Each emulator draws its own faults (the same rates, its own seed).
            Generator(
                n,
                None if faults is None else replace(faults, seed=faults.seed * 1_000 + n),
                list(replies) if replies is not None and n == 0 else None,
            )
            for n in range(generators)
        ]
        self._bundle = tempfile.NamedTemporaryFile(prefix="bench-world-ca-", suffix=".pem")
        self.network = ControlNetwork()
        self.llm_api_base: str | None = None

    @property
    def origins(self) -> list[str]:
        return [g.origin for g in self.generators]

    async def __aenter__(self) -> World:
        try:
            async with anyio.create_task_group() as tg:
                for g in self.generators:
                    tg.start_soon(g.start)
        except BaseException:
            await self._stop()
            raise
        self.network = self._merged_network()
        self.llm_api_base = self.generators[0].llm_api_base
        return self

    def _merged_network(self) -> ControlNetwork:
        """Every emulator's pin, and a trust store holding every generator's lab CA."""
        networks = [g.network for g in self.generators]
        pems = [Path(n.ssl_cert_file).read_bytes() for n in networks if n.ssl_cert_file]
        self._bundle.write(b"\n".join(pems))
        self._bundle.flush()
        return replace(
            networks[0],
            resolve=tuple(pin for n in networks for pin in n.resolve),
            ssl_cert_file=self._bundle.name if pems else None,
        )

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for g in self.generators:
                    if g.process.pid is not None:
                        tg.start_soon(g.stop)
            self._bundle.close()

    def split(self, calls: int) -> list[tuple[int, ...]]:
        """Which calls of a round each generator plays."""
        k = len(self.generators)
        return [tuple(range(n, calls, k)) for n in range(k)]

    async def control_urls(self, sessions: Sequence[str]) -> list[str]:
        """Control URLs for `sessions`, spread over the emulators as calls are."""
        shares = self.split(len(sessions))
        urls: list[str] = [""] * len(sessions)
        for g, share in zip(self.generators, shares, strict=True):
            got = await g.command("urls", [sessions[i] for i in share])
            for i, url in zip(share, got, strict=True):
                urls[i] = url
        return urls

    async def arrivals(self, prefix: str) -> dict[str, float]:
        """When each request of the sessions starting with `prefix` arrived, by request id."""
        out: dict[str, float] = {}
        for g in self.generators:
            out.update(await g.command("arrivals", prefix))
        return out

    async def play(self, plans: Sequence[RoundPlan], on_start: anyio.Event) -> list[GeneratorRound]:
        """Play one round, one plan per generator, in step. Once every call of every generator
        is connected, `start_at` is set (the round's start, on the shared monotonic clock) and
        `on_start` fires; every generator then gets `go`, and `hangup` once all are done."""
        results: list[GeneratorRound | None] = [None] * len(plans)
        connected, finished = anyio.Event(), anyio.Event()
        counts = {"connected": 0, "finished": 0}

        def reached(step: str, event: anyio.Event) -> None:
            counts[step] += 1
            if counts[step] == len(plans):
                if step == "connected":
                    self.start_at = anyio.current_time() + 0.2
                    on_start.set()
                event.set()

        async def drive(n: int, g: Generator, plan: RoundPlan) -> None:
            g.send("round", plan)
            await g.expect("connected", STEP_TIMEOUT_S)
            reached("connected", connected)
            await connected.wait()
            g.send("go", self.start_at)
            await g.expect("finished", STEP_TIMEOUT_S)
            reached("finished", finished)
            await finished.wait()
            g.send("hangup", None)
            results[n] = await g.expect("ok", STEP_TIMEOUT_S)

        self.start_at = 0.0
        async with anyio.create_task_group() as tg:
            for n, (g, plan) in enumerate(zip(self.generators, plans, strict=True)):
                tg.start_soon(drive, n, g, plan)
        return [r for r in results if r is not None]
