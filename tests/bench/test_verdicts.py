"""How the benchmark judges a round: PASS, FAIL, or INVALID when the floor itself (a bare pooled
POST in the same window) missed the target, and how the capacity ramp picks its largest level.
Pure functions over recorded samples: no processes, no timing."""

from __future__ import annotations

from bench.app_process import AppStats, LoopHealth
from bench.capacity import CapacityResult, CapacityStep
from bench.chain import ChainResult
from bench.checks import _chain_check, _held_check
from bench.generator import CallSample
from bench.load import LoadRound
from bench.overhead import Level
from bench.resources import ResourceRun
from lab.chain import ChainCase, ChainRow

STATS = AppStats(0.0, 0.0, 0, 0, True, 0, 0, 0.0)


def _round(calls: int, dead_air_ms: float, floor_ms: float, *, accepted: bool = True) -> LoadRound:
    samples = tuple(
        CallSample(
            session=f"t-{i}",
            turn_ended_at=1.0,
            post_at=1.0 + dead_air_ms / 1000,
            accepted_at=1.0 + dead_air_ms / 1000 if accepted else None,
            posts=1,
            effects=1,
            dead_air_s=dead_air_ms / 1000 if accepted else None,
        )
        for i in range(calls)
    )
    return LoadRound(calls, samples, (floor_ms / 1000,) * calls, (), LoopHealth((), ()), 10.0)


def _step(calls: int, dead_air_ms: float, floor_ms: float, *, accepted: bool = True) -> CapacityStep:
    run = ResourceRun(
        "x", False, calls, STATS, STATS, _round(calls, dead_air_ms, floor_ms, accepted=accepted)
    )
    return CapacityStep(calls, run)


def test_a_capacity_level_passes_fails_or_is_invalid() -> None:
    assert _step(10, dead_air_ms=20, floor_ms=5).verdict == "PASS"
    assert _step(10, dead_air_ms=60, floor_ms=5).verdict == "FAIL"
    assert _step(10, dead_air_ms=20, floor_ms=5, accepted=False).verdict == "FAIL"  # a lost action
    assert _step(10, dead_air_ms=60, floor_ms=70).verdict == "INVALID"  # the floor missed it too
    assert CapacityStep(10, None, why="did not run").verdict == "INVALID"


def test_the_largest_passing_level_stops_at_the_first_level_that_did_not_pass() -> None:
    steps = (_step(10, 5, 1), _step(20, 10, 1), _step(40, 70, 1), _step(80, 5, 1))
    best = CapacityResult(steps, 12.0, 2.8).largest_passing
    assert best is not None and best.calls == 20
    assert CapacityResult((_step(10, 5, 80),), 12.0, 2.8).largest_passing is None


def test_a_held_level_whose_floor_missed_the_target_is_invalid_not_failed() -> None:
    slow_floor = Level("100 calls", 100, (_round(100, dead_air_ms=60, floor_ms=55),), 2.8)
    check = _held_check(slow_floor, 100, 50.0)
    assert check.invalid and check.verdict == "**INVALID**"
    assert "the floor itself" in check.why
    fine_floor = Level("100 calls", 100, (_round(100, dead_air_ms=60, floor_ms=5),), 2.8)
    check = _held_check(fine_floor, 100, 50.0)
    assert not check.invalid and check.verdict == "**FAIL**"


def _chain_row(lag_ms: int, guard: bool, cut_ms: float | None, silence_ms: float | None) -> ChainRow:
    hung_up_by = None if cut_ms is None else "end_call"
    return ChainRow(ChainCase(lag_ms, "immediately", guard), cut_ms, silence_ms, None, hung_up_by)


def test_the_chain_passes_only_when_every_guarded_goodbye_is_whole_and_the_silence_within_the_bound() -> None:
    whole = (_chain_row(0, True, 0.0, 1001.0), _chain_row(400, True, 0.0, 1001.0))
    clipped_unguarded = _chain_row(400, False, 390.0, 0.0)
    check = _chain_check(ChainResult((*whole, clipped_unguarded), 3.0))
    assert check.verdict == "**PASS**"
    assert "guard off, for information: cut up to 390 ms" in check.why  # reported, not judged
    for bad in (
        _chain_row(400, True, 12.0, 0.0),  # a guarded goodbye clipped
        _chain_row(400, True, 0.0, 3200.0),  # silence past the 3 s bound
        _chain_row(400, True, None, None),  # the caller never hung up
    ):
        check = _chain_check(ChainResult((whole[0], bad), 3.0))
        assert check.verdict == "**FAIL**", bad
        assert "lag 400 ms | guard on" in check.why
    assert _chain_check(None).verdict == "–"
