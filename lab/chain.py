"""`python -m lab chain`: what the caller hears of the goodbye on the real call chain.

Each row is one offline call through the real app: the caller says goodbye, the agent says a
short goodbye and calls `end_call`, and the chain plays out (docs/control-contract.md "The
hang-up chain"): the harness (`lab.harness`, closing the call after Line's `end_call` never /
immediately / after its queued speech), VoxEngine's media buffer `lag` behind the harness's
playback with its media events (`lab.media_buffer`), and the scenario's playout guard and close
handling (`lab.voxengine_emulator`). The figures are the buffer's truth, which the real scenario
cannot see: how much of the goodbye the caller never heard (cut), and the silence between the
goodbye's end and the hang-up; beside them, the offset the scenario could know and reports
(`playout_offset_ms`: unknown when its media events still said "playing").

The "before #17" rows play the agent and the scenario as they were: `end_call` yielded Line's
`AgentEndCall` at the tool call, and any close of the agent's socket ended the session at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from line.agent import TurnEnv
from line.events import AgentEndCall, AgentToolCalled, InputEvent, OutputEvent
from loguru import logger

from agent.call_control import CallControl
from agent.conversation import build_llm_agent
from agent.settings import Settings
from lab.call_lab import CallLab
from lab.harness import CloseAfterEndCall
from lab.scenarios import goodbye_reply
from lab.tts_model import TtsModel
from lab.voxengine_emulator import CloseHandling, PlayoutGuard

__all__ = ["ChainCase", "ChainRow", "chain_cases", "main", "play_case", "render_table"]

GOODBYE = "Goodbye, take care!"
LAGS_MS = (0, 150, 400)
CLOSES: tuple[CloseAfterEndCall, ...] = ("no", "immediately", "after_speech")
Agent = Literal["new", "old"]
CALL_LIMIT_S = 30.0


@dataclass(frozen=True)
class ChainCase:
    lag_ms: int
    close: CloseAfterEndCall
    guard: bool  # the scenario's playout guard (ignored by the old scenario, which had none)
    agent: Agent = "new"

    @property
    def close_handling(self) -> CloseHandling:
        return "keep_caller" if self.agent == "new" else "end_at_once"

    @property
    def label(self) -> str:
        guard = "-" if self.agent == "old" else ("on" if self.guard else "off")
        chain = "new chain" if self.agent == "new" else "before #17"
        return f"{chain} | harness closes: {self.close} | lag {self.lag_ms} ms | guard {guard}"


@dataclass(frozen=True)
class ChainRow:
    case: ChainCase
    cut_ms: float | None  # None: the caller was never hung up (stranded)
    silence_ms: float | None
    reported_offset_ms: int | None  # what the scenario knew (None: unknown)
    hung_up_by: str | None  # end_call, agent_lost, agent_closed


def chain_cases(lags_ms: Sequence[int] = LAGS_MS) -> list[ChainCase]:
    """Every lag × harness close model × guard for the new chain, then the old chain's rows."""
    new = [ChainCase(lag, close, guard) for lag in lags_ms for close in CLOSES for guard in (True, False)]
    old = [ChainCase(lag, close, False, "old") for lag in lags_ms for close in CLOSES]
    return new + old


class _EndsCallAtTheTool:
    """The agent before #17: `end_call` yielded Line's `AgentEndCall` as the tool ran (git
    history of agent/tools.py), so Line sent `end_call` to the harness right after the goodbye's
    text, before it was spoken."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def process(self, env: TurnEnv, event: InputEvent) -> AsyncIterator[OutputEvent]:
        async for output in self._inner.process(env, event):
            yield output
            if isinstance(output, AgentToolCalled) and output.tool_name == "end_call":
                yield AgentEndCall()


def _old_agent(settings: Settings, control: CallControl) -> Any:
    return _EndsCallAtTheTool(build_llm_agent(settings, control))


async def play_case(case: ChainCase, *, words_per_s: float = 4.0) -> ChainRow:
    """One call of `case`; the caller's hearing measured from VoxEngine's media buffer."""
    tts = TtsModel(first_audio_s=0.2, jitter_s=0.0, words_per_s=words_per_s)
    async with CallLab(
        [goodbye_reply(GOODBYE)],
        agent_factory=build_llm_agent if case.agent == "new" else _old_agent,
        playout_lag_s=case.lag_ms / 1000,
        guard=PlayoutGuard(on=case.guard),
        close_handling=case.close_handling,
    ) as lab:
        async with lab.call(tts=tts, close_after_end_call=case.close, call_id=f"chain-{case.lag_ms}") as sim:
            with anyio.fail_after(CALL_LIMIT_S):
                await sim.wait_agent_turn_end(1, timeout_s=CALL_LIMIT_S)
                await sim.user_says("That's all, thanks.")
            with anyio.move_on_after(CALL_LIMIT_S):  # a stranded caller shows as a row, not a hang
                await lab.emulator.wait_for_hang_ups(1, timeout=CALL_LIMIT_S)
                await sim.wait_closed(timeout_s=CALL_LIMIT_S)
        await lab.wait_calls_ended(1, timeout_s=CALL_LIMIT_S)
    goodbye = sim.timeline.first("agent_text_received", where=lambda e: e.detail.get("turn") == 2)
    if not lab.emulator.hang_ups or goodbye is None:
        return ChainRow(case, None, None, None, None)
    hang_up = lab.emulator.hang_ups[0]
    # The goodbye's audio at VoxEngine starts no earlier than its text reached the harness.
    playout = lab.emulator.media().playout(
        hang_up.time, since=goodbye.at + case.lag_ms / 1000, intended_s=len(GOODBYE.split()) / words_per_s
    )
    cut = None if playout.cut_s is None else playout.cut_s * 1000
    silence = None if playout.silence_s is None else playout.silence_s * 1000
    return ChainRow(case, cut, silence, hang_up.playout_offset_ms, hang_up.why)


async def play_all(
    cases: Sequence[ChainCase], *, parallel: int = 4, words_per_s: float = 4.0
) -> list[ChainRow]:
    """Play `cases`, `parallel` calls at a time (each on its own lab), in the cases' order."""
    rows: list[ChainRow | None] = [None] * len(cases)
    limiter = anyio.Semaphore(parallel)

    async def one(n: int) -> None:
        async with limiter:
            rows[n] = await play_case(cases[n], words_per_s=words_per_s)

    async with anyio.create_task_group() as tg:
        for n in range(len(cases)):
            tg.start_soon(one, n)
    return [row for row in rows if row is not None]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def render_table(rows: Sequence[ChainRow]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| chain | harness closes after `end_call` | playout lag | guard | goodbye cut | "
        "silence before hang-up | hung up by | `playout_offset_ms` reported |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        case = row.case
        chain = "new" if case.agent == "new" else "before #17"
        guard = "-" if case.agent == "old" else ("on" if case.guard else "off")
        stranded = row.hung_up_by is None
        reported = "unknown" if row.reported_offset_ms is None else f"{row.reported_offset_ms}"
        lines.append(
            f"| {chain} | {case.close} | {case.lag_ms} ms | {guard} | "
            + ("**never hung up** | - | - | - |" if stranded else "")
            + (
                ""
                if stranded
                else f"{_ms(row.cut_ms)} | {_ms(row.silence_ms)} | {row.hung_up_by} | {reported} |"
            )
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab chain", description=__doc__)
    p.add_argument(
        "--lag-ms", type=int, action="append", help="playout lags (repeatable); default 0, 150, 400"
    )
    p.add_argument("--parallel", type=int, default=4, help="calls played at a time (default 4)")
    p.add_argument("--words-per-s", type=float, default=4.0, help="TTS pace (default 4)")
    p.add_argument("--verbose", action="store_true", help="show the app's own logs")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if args.verbose else "ERROR")
    cases = chain_cases(tuple(args.lag_ms) if args.lag_ms else LAGS_MS)
    print(f"playing {len(cases)} calls, {args.parallel} at a time ...", file=sys.stderr, flush=True)
    rows = anyio.run(lambda: play_all(cases, parallel=args.parallel, words_per_s=args.words_per_s))
    print(render_table(rows))
    return 0
