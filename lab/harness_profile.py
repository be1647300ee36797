"""What the simulated Cartesia harness does, beyond the pace of speech: when it ends an agent turn
and how it acknowledges the words it played. Each behaviour names its source.

Two profiles:

- `FAITHFUL` (the lab's default) follows what the real harness is documented to do;
- `IDEALISED` is the lab's earlier, kinder model, kept for comparison: every played word is
  acknowledged exactly, at its end, and a turn ends the moment its audio ends.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["FAITHFUL", "IDEALISED", "PROFILES", "HarnessProfile", "WordAcks"]


@dataclass(frozen=True)
class WordAcks:
    """How played words come back as `agent_speech` (Line: `AgentTextSent`).

    Sources: Line 0.2.19 `line/voice_agent_app.py`:
    - `_parse_committed` docstring: acknowledged text arrives with whitespace and emoji stripped,
      "TTS may insert sentence-ending punctuation absent from the original text" (a full stop),
      and "the TTS may have dropped a word";
    - `_get_processed_history`: "inevitable mismatches from TTS wordstamp drops" and "late
      ack-backs" (acknowledgements that arrive after later events).
    Assumptions (no source gives numbers or the exact form): a merge is one acknowledgement
    carrying two words with the whitespace between them stripped; a full stop is added to the
    last word played so far when it has no punctuation; each acknowledgement trails its word's
    audio by a uniform lag, acknowledgements keep their order, and a turn's acknowledgements all
    come before its idle (so a barge-in's late ones follow the caller's `speaking`, as the SDK's
    "late ack-backs" do, but never cross into the next turn).
    """

    merge_p: float = 0.0
    drop_p: float = 0.0
    full_stop_p: float = 0.0
    lag_max_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("merge_p", "drop_p", "full_stop_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability")
        if self.lag_max_s < 0:
            raise ValueError("lag_max_s must be >= 0")

    @property
    def exact(self) -> bool:
        return self == WordAcks()

    def lag_s(self, rng: random.Random) -> float:
        return rng.uniform(0.0, self.lag_max_s) if self.lag_max_s > 0 else 0.0


@dataclass(frozen=True)
class HarnessProfile:
    """The harness's turn-ending rule and its word acknowledgements."""

    name: str
    # True: an agent turn ends (`agent_state: idle`) only once its audio has played AND the
    # harness has closed the turn, on the agent's `response_end` or after `inactivity_s` without
    # agent output. False: the turn ends when its audio ends.
    # Sources: Line 0.2.19 `line/voice_agent_app.py` `_send_response_end` ("The harness otherwise
    # learns a reply is over from 2.5s of silence"); `line/_harness_types.py` `ResponseEndOutput`
    # ("Lets the harness close the TTS turn right away instead of waiting out its inactivity
    # timer"). Assumptions: any agent output frame restarts the inactivity timer; a
    # `response_end` closes the turn that is open when it arrives; text arriving for a closed
    # turn opens the next one, played after it.
    closes_turns: bool
    inactivity_s: float
    acks: WordAcks

    def __post_init__(self) -> None:
        if self.inactivity_s <= 0:
            raise ValueError("inactivity_s must be > 0")


IDEALISED = HarnessProfile("idealised", closes_turns=False, inactivity_s=2.5, acks=WordAcks())
FAITHFUL = HarnessProfile(
    "faithful",
    closes_turns=True,
    inactivity_s=2.5,  # line/voice_agent_app.py `_send_response_end`
    # Assumption: rates and lag are ours (no published figures); seeded per call.
    acks=WordAcks(merge_p=0.08, drop_p=0.03, full_stop_p=0.3, lag_max_s=0.15),
)
PROFILES = {p.name: p for p in (FAITHFUL, IDEALISED)}
