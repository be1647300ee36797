"""The flush policy decides releases from harness events alone: every rule of the issue here."""

from line.events import AgentTurnEnded, AgentTurnStarted, CallEnded, UserTurnEnded, UserTurnStarted

from agent.flush_policy import FlushPolicy, FlushTimings, Verdict

T = FlushTimings(no_speech_s=1.0, max_hold_s=30.0)


def released(action_id: str, reason: str) -> list[Verdict]:
    return [Verdict(action_id, "release", reason)]


def test_released_by_the_end_of_the_turn_that_carries_the_confirmation() -> None:
    p = FlushPolicy(T)
    assert p.hold("a", now=0.0) == []
    assert p.observe(AgentTurnStarted(), 0.3) == []  # the confirmation starts playing
    assert p.due(5.0) == []  # a long confirmation is never cut off by a timer
    assert p.observe(AgentTurnEnded(), 7.0) == released("a", "turn_ended")
    assert p.held == ()


def test_held_while_its_turn_is_already_speaking_is_carried_by_that_turn() -> None:
    p = FlushPolicy(T)
    p.observe(UserTurnStarted(), 0.0)
    p.observe(AgentTurnStarted(), 1.0)  # the reply's first words, same epoch
    p.hold("a", now=1.2)
    assert p.carrier_of("a") == 1
    assert p.observe(AgentTurnEnded(), 3.0) == released("a", "turn_ended")


def test_stale_turn_end_of_an_earlier_turn_does_not_release() -> None:
    p = FlushPolicy(T)
    p.observe(AgentTurnStarted(), 0.0)  # the introduction
    p.observe(UserTurnStarted(), 0.8)  # the caller talks over it
    p.observe(UserTurnEnded(), 1.5)
    p.hold("a", now=1.9)  # the tool ran
    assert p.observe(AgentTurnEnded(), 2.0) == []  # the introduction's late idle
    p.observe(AgentTurnStarted(), 2.2)  # the confirmation
    assert p.carrier_of("a") == 2
    assert p.observe(AgentTurnEnded(), 4.0) == released("a", "turn_ended")


def test_barge_in_during_confirmation_delivers_when_that_turn_ends() -> None:
    p = FlushPolicy(T)
    p.hold("a", now=0.0)
    p.observe(AgentTurnStarted(), 0.2)
    assert p.observe(UserTurnStarted(), 0.9) == []  # not lost, not cancelled
    assert p.observe(AgentTurnEnded(), 1.0) == released("a", "turn_ended")


def test_barge_in_cancels_when_the_kind_says_so() -> None:
    p = FlushPolicy(T)
    p.hold("a", now=0.0, barge_in="cancel")
    p.observe(AgentTurnStarted(), 0.2)
    assert p.observe(UserTurnStarted(), 0.9) == [Verdict("a", "cancel", "barge_in")]


def test_no_speech_deadline_releases_a_silent_action() -> None:
    p = FlushPolicy(T)
    p.hold("a", now=10.0)
    assert p.next_deadline() == 11.0
    assert p.due(10.99) == []
    assert p.due(11.0) == released("a", "no_speech")


def test_a_turn_that_never_ends_releases_at_max_hold() -> None:
    p = FlushPolicy(T)
    p.hold("a", now=0.0)
    p.observe(AgentTurnStarted(), 0.1)
    assert p.next_deadline() == 30.0  # armed: only max hold remains
    assert p.due(29.9) == []
    assert p.due(30.0) == released("a", "max_hold")


def test_call_ended_releases_everything_immediately_and_later_holds_too() -> None:
    p = FlushPolicy(T)
    p.hold("a", now=0.0)
    p.observe(AgentTurnStarted(), 0.1)
    p.hold("b", now=0.2)
    assert p.observe(CallEnded(), 0.3) == released("a", "call_ended") + released("b", "call_ended")
    assert p.hold("c", now=0.4) == released("c", "call_ended")


def test_duplicate_and_orphan_idles_release_nothing_extra() -> None:
    p = FlushPolicy(T)
    assert p.observe(AgentTurnEnded(), 0.0) == []  # idle with no turn
    p.hold("a", now=0.1)
    p.observe(AgentTurnStarted(), 0.2)
    assert p.observe(AgentTurnEnded(), 1.0) == released("a", "turn_ended")
    assert p.observe(AgentTurnEnded(), 1.1) == []


def test_a_new_turn_start_without_idle_ends_the_previous_turn() -> None:
    p = FlushPolicy(T)
    p.hold("a", now=0.0)
    p.observe(AgentTurnStarted(), 0.1)
    assert p.observe(AgentTurnStarted(), 2.0) == released("a", "turn_ended")
