"""How the benchmark judges a round: PASS, FAIL, or INVALID when the floor itself (a bare pooled
POST in the same window) missed the target, and how the capacity ramp picks its largest level.
Pure functions over recorded samples: no processes, no timing."""

from __future__ import annotations

from bench.app_process import AppStats, LoopHealth
from bench.capacity import CapacityResult, CapacityStep
from bench.checks import _held_check
from bench.generator import CallSample
from bench.load import LoadRound
from bench.overhead import Level
from bench.resources import ResourceRun

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
