"""Section 9, the hang-up chain: what the caller hears of the goodbye. Plays `python -m lab chain`'s
cases (`lab/chain.py`: the real app, the harness closing after `end_call` per its close model,
VoxEngine's media buffer lagging behind the harness, the scenario's playout guard) and keeps its
rows; the report shows them as `lab chain` prints them and judges the guarded ones."""

from __future__ import annotations

from dataclasses import dataclass

from bench.config import BenchConfig
from bench.progress import Progress
from lab.chain import ChainRow, chain_cases, play_all
from lab.voxengine_emulator import PlayoutGuard

SECTION = "chain"
PARALLEL = 4  # calls at a time, as `python -m lab chain` plays them by default


@dataclass(frozen=True)
class ChainResult:
    rows: tuple[ChainRow, ...]
    guard_max_s: float  # HANGUP_PLAYOUT_GUARD_MAX_S the cases ran with (the guard's default)

    @property
    def guarded(self) -> tuple[ChainRow, ...]:
        """The shipped chain: the new agent and scenario with the guard on (the default)."""
        return tuple(r for r in self.rows if r.case.agent == "new" and r.case.guard)

    @property
    def unguarded(self) -> tuple[ChainRow, ...]:
        return tuple(r for r in self.rows if r.case.agent == "new" and not r.case.guard)

    def held(self, row: ChainRow) -> bool:
        """Hung up, nothing of the goodbye cut, and the silence before it within the guard's bound."""
        return (
            row.hung_up_by is not None
            and row.cut_ms == 0
            and row.silence_ms is not None
            and row.silence_ms <= self.guard_max_s * 1000
        )


async def run_chain(config: BenchConfig, progress: Progress) -> ChainResult:
    cases = [c for c in chain_cases(config.chain_lags_ms) if c.close in config.chain_closes]
    progress.say(SECTION, f"playing {len(cases)} calls, {PARALLEL} at a time")
    rows = await play_all(cases, parallel=PARALLEL)
    # lab.chain builds each case's guard as PlayoutGuard(on=...), so its bound is the default.
    return ChainResult(tuple(rows), PlayoutGuard().max_s)
