"""The two test tiers. `./dev test` runs the fast tier (VOX_TEST_TIER=fast): the `slow` tests are
deselected, speech plays faster in the tests whose assertion is about order rather than pace, and
hypothesis tries fewer examples. `./dev test --all` (what CI runs) and a plain `pytest` run the
tier "all": everything, at the real pace, with every example."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # tests/conftest.py imports this module before LiteLLM's settings are made
    from lab.scenarios import Scenario
    from lab.tts_model import TtsModel

TIERS = ("fast", "all")
TIER = os.environ.get("VOX_TEST_TIER", "all")
if TIER not in TIERS:
    raise RuntimeError(f"VOX_TEST_TIER must be one of {', '.join(TIERS)}, not {TIER!r}")
FAST = TIER == "fast"

# The fast tier's speech is this many times faster; 4x keeps a 1 s confirmation at 250 ms, still
# well apart from the 300 ms late bound's noise, and cuts a scripted call from ~8 s to ~3 s.
SPEEDUP = 4.0 if FAST else 1.0
# The fast tier's share of a property test's examples: enough to exercise every strategy branch.
EXAMPLES_DIVISOR = 8 if FAST else 1
MIN_EXAMPLES = 10 if FAST else 1


def examples(n: int) -> int:
    """A property test's example count: `n` in the tier "all", an eighth (at least 10) when fast."""
    return min(n, max(MIN_EXAMPLES, n // EXAMPLES_DIVISOR))


def tier_pace(tts: TtsModel) -> TtsModel:
    """`tts` at this tier's pace: unchanged in the tier "all", SPEEDUP times faster when fast."""
    if not FAST:
        return tts
    return replace(
        tts,
        first_audio_s=tts.first_audio_s / SPEEDUP,
        jitter_s=tts.jitter_s / SPEEDUP,
        words_per_s=tts.words_per_s * SPEEDUP,
    )


def at_tier_pace(scenario: Scenario) -> Scenario:
    """`scenario` with its speech at this tier's pace. Only for a scenario whose caller waits for
    events, never for seconds into the agent's speech (a barge-in 1 s into a goodbye)."""
    return scenario.with_tts(tier_pace(scenario.tts))
