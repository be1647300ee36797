"""Timing assertions for tests of telephony actions."""

from __future__ import annotations

from lab.action_timing import ActionTiming
from lab.replay import ReplayResult
from lab.results import CallResult

# Generous for a loaded 2-core CI machine; `python -m bench` reports the real p50/p99.
LATE_BOUND_S = 0.300


def assert_fired_at_turn_end(
    result: CallResult, action: str, late_bound_s: float = LATE_BOUND_S
) -> ActionTiming:
    """`action` was accepted once, after its confirming speech ended, within `late_bound_s`."""
    timing = result.timing(action)
    assert timing.delivered, f"{action} never delivered\n{result.render()}"
    assert not timing.early, f"{action} fired during its confirmation\n{result.render()}"
    offset = timing.offset_s
    assert offset is not None and 0.0 <= offset <= late_bound_s, (
        f"{action} offset {offset}\n{result.render()}"
    )
    accepted = [e for e in result.effects if e.action == action]
    assert len(accepted) == 1, f"{action} had {len(accepted)} telephony effects"
    return timing


def assert_replayed_on_time(result: ReplayResult) -> None:
    """Every action the recorded call asked for was accepted, none while the agent spoke."""
    assert result.actions, f"the recording asked for no action\n{result.report()}"
    assert not result.problems, result.report()
