"""VoxEngine's buffer of the agent's audio: when the caller hears it, and the media events the
scenario sees about it. Each rule names its source, or says "assumption".

- VoxEngine buffers the agent's audio before the caller's leg plays it
  (`Cartesia.AgentsClient.clearMediaBuffer`: "Clears the Cartesia WebSocket media buffer").
- `Cartesia.Events.WebSocketMediaStarted` fires "when the audio stream ... starts playing" and
  `WebSocketMediaEnded` "after the end of the audio stream ... (1 second of silence)"
  (Voximplant's Cartesia connector, Events reference): an ended event is `silence_s` after the
  audio stopped, so (ended − 1 s) is when the audio stopped at VoxEngine.
- Assumption: the audio plays at VoxEngine a constant `lag_s` behind the harness's playback (the
  simulated harness's word timeline); whether the harness's `agent_state: idle` follows playout at
  VoxEngine is undocumented, and the lag is the lab's knob for it (`--playout-lag-ms`).
- Assumption: the harness's playback is the stream: audio the harness never played (it stopped
  the turn, or closed the call) never reaches VoxEngine, and what did reach it plays out unless
  the caller's leg is hung up first, even if the agent's socket closed meanwhile.
- Assumption: audio that resumes within the 1 s of silence continues the same stream: no ended
  event, no second started event.

Times are on the lab's one clock (`time.perf_counter`); the harness's times go in, VoxEngine's
(harness + lag) come out. A stream still open has no end yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["MEDIA_ENDED_SILENCE_S", "MediaBuffer", "MediaEvent", "Playout"]

MEDIA_ENDED_SILENCE_S = 1.0  # the connector's "(1 second of silence)"


@dataclass(frozen=True)
class MediaEvent:
    kind: Literal["started", "ended"]
    at: float


@dataclass(frozen=True)
class Playout:
    """What the caller heard of the agent against an effect (a hang-up, a bridge) at VoxEngine,
    from the buffer's truth: `cut_s` of buffered audio never played, `silence_s` between the
    audio's end and the effect (one of them is 0). `None`s: the agent's audio never played."""

    cut_s: float | None
    silence_s: float | None


class MediaBuffer:
    """One session's agent audio at VoxEngine, fed with the harness's playback as it happens."""

    def __init__(self, lag_s: float = 0.0, silence_s: float = MEDIA_ENDED_SILENCE_S) -> None:
        if lag_s < 0:
            raise ValueError("the playout lag must be >= 0")
        self.lag_s = lag_s
        self.silence_s = silence_s
        self._spans: list[list[float | None]] = []  # [start, end] at VoxEngine, end None: playing

    # ---- fed from the harness's playback (harness times) ----

    def harness_started(self, at: float) -> None:
        """The harness started playing agent audio at `at`."""
        if self._spans and self._spans[-1][1] is None:
            return  # already playing
        self._spans.append([at + self.lag_s, None])

    def harness_stopped(self, at: float) -> None:
        """The harness's audio so far ended at `at` (played out, or cut by the harness)."""
        if self._spans and self._spans[-1][1] is None:
            start = self._spans[-1][0]
            assert start is not None
            self._spans[-1][1] = max(start, at + self.lag_s)

    # ---- what the scenario sees ----

    def events(self, until: float) -> list[MediaEvent]:
        """The media events fired by `until` (VoxEngine's time), in order."""
        fired: list[MediaEvent] = []
        for start, end in self._streams():
            if start > until:
                break
            fired.append(MediaEvent("started", start))
            if end is not None and end + self.silence_s <= until:
                fired.append(MediaEvent("ended", end + self.silence_s))
        return fired

    def playing_as_seen(self, at: float) -> bool:
        """A WebSocketMediaStarted with no WebSocketMediaEnded after it, as of `at`."""
        seen = self.events(at)
        return bool(seen) and seen[-1].kind == "started"

    def next_event_after(self, at: float) -> float | None:
        """When the next media event known so far fires (None: none known yet)."""
        return min((e.at for e in self.events(math.inf) if e.at > at), default=None)

    def known_offset_ms(self, effect_at: float) -> int | None:
        """The playout offset the scenario can know at an effect at `effect_at`: effect − (last
        ended − 1 s), in ms; None when the audio was still playing as far as it can tell (no
        ended after the last started) or no media event was ever seen."""
        seen = self.events(effect_at)
        if not seen or seen[-1].kind != "ended":
            return None
        return round((effect_at - (seen[-1].at - self.silence_s)) * 1000)

    # ---- the truth, for the lab's measurements ----

    def playout(
        self, effect_at: float, *, since: float = -math.inf, intended_s: float | None = None
    ) -> Playout:
        """What the caller heard, against an effect at `effect_at`, of the audio that started at
        VoxEngine from `since` on (call it after the call, once the harness's playback is
        known). `intended_s`: how long that audio was meant to be; what the harness never played
        (it stopped, or closed the call) is cut too, since it never reached VoxEngine."""
        spans = [
            (s, e if e is not None else effect_at) for s, e in self._spans if s is not None and s >= since
        ]
        played = sum(e - s for s, e in spans)
        unplayed = max(0.0, intended_s - played) if intended_s is not None else 0.0
        cut = sum(max(0.0, e - max(s, effect_at)) for s, e in spans) + unplayed
        if not spans:
            return Playout(cut if intended_s else None, None)
        if cut > 0:
            return Playout(cut, 0.0)
        return Playout(0.0, effect_at - max(e for _, e in spans))

    def _streams(self) -> list[tuple[float, float | None]]:
        """The spans merged into streams: a gap shorter than the silence is one stream."""
        streams: list[list[float | None]] = []
        for start, end in self._spans:
            assert start is not None
            last = streams[-1] if streams else None
            if last is not None and last[1] is not None and start - last[1] < self.silence_s:
                last[1] = end
            elif last is not None and last[1] is None:
                continue  # cannot happen: a span opens only after the previous one closed
            else:
                streams.append([start, end])
        return [(s, e) for s, e in streams if s is not None]
