"""VoxEngine's media buffer (lab/media_buffer.py): the audio plays `lag` behind the harness, the
scenario sees started / ended (= audio end + 1 s), and knows an offset only after an ended."""

from __future__ import annotations

import pytest

from lab.media_buffer import MediaBuffer, MediaEvent, Playout


def test_the_audio_plays_lag_behind_and_ends_are_seen_a_second_late() -> None:
    media = MediaBuffer(lag_s=0.4)
    media.harness_started(10.0)
    media.harness_stopped(12.0)
    assert media.events(until=10.3) == []
    assert media.events(until=13.39) == [MediaEvent("started", 10.4)]
    assert media.playing_as_seen(13.0)  # the audio ended at 12.4, but no ended event yet
    assert media.events(until=13.4) == [MediaEvent("started", 10.4), MediaEvent("ended", 13.4)]
    assert media.next_event_after(11.0) == pytest.approx(13.4)


def test_the_offset_is_known_only_after_an_ended_event() -> None:
    media = MediaBuffer(lag_s=0.15)
    assert media.known_offset_ms(5.0) is None  # no media event ever seen
    media.harness_started(1.0)
    media.harness_stopped(2.0)
    assert media.known_offset_ms(2.5) is None  # playing as far as the scenario can tell
    assert media.known_offset_ms(3.65) == 1500  # ended at 3.15: audio end 2.15


def test_audio_resuming_within_the_silence_is_one_stream() -> None:
    media = MediaBuffer()
    media.harness_started(0.0)
    media.harness_stopped(1.0)
    media.harness_started(1.5)  # within 1 s of silence: no ended, no second started
    media.harness_stopped(2.0)
    assert media.events(until=10.0) == [MediaEvent("started", 0.0), MediaEvent("ended", 3.0)]


def test_the_truth_counts_buffered_and_never_played_audio_as_cut() -> None:
    media = MediaBuffer(lag_s=0.4)
    media.harness_started(0.0)
    media.harness_stopped(1.0)  # at VoxEngine: 0.4 .. 1.4
    assert media.playout(1.0) == Playout(pytest.approx(0.4), 0.0)  # hung up with 400 ms buffered
    assert media.playout(2.0) == Playout(0.0, pytest.approx(0.6))
    # The harness stopped after 1 s of a 1.5 s goodbye: the rest never reached VoxEngine.
    assert media.playout(2.0, intended_s=1.5) == Playout(pytest.approx(0.5), 0.0)
    assert MediaBuffer().playout(1.0, intended_s=0.75) == Playout(0.75, None)  # none of it played


def test_a_negative_lag_is_refused() -> None:
    with pytest.raises(ValueError, match="lag"):
        MediaBuffer(lag_s=-0.1)
