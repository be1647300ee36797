"""A timing model of text-to-speech playback, for the lab's harness simulator.

Speech is modelled per turn: the first word's audio starts ``first_audio_s`` (plus a seeded,
uniformly drawn ``jitter_s``) after the turn's first text arrived, then whitespace-separated
words play back to back, each lasting ``1 / words_per_s`` seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["TtsModel"]


@dataclass(frozen=True)
class TtsModel:
    """How long synthesized speech takes to start and to play."""

    first_audio_s: float = 0.25
    words_per_s: float = 2.8
    jitter_s: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.first_audio_s < 0 or self.jitter_s < 0:
            raise ValueError("first_audio_s and jitter_s must be >= 0")
        if self.words_per_s <= 0:
            raise ValueError("words_per_s must be > 0")

    @property
    def word_s(self) -> float:
        """Playback time of one word."""
        return 1.0 / self.words_per_s

    @staticmethod
    def words(text: str) -> list[str]:
        """The words of ``text`` as they are played and acknowledged (whitespace stripped)."""
        return text.split()

    def duration_of(self, text: str) -> float:
        """Playback time of ``text``, from the first word's start to the last word's end."""
        return len(self.words(text)) * self.word_s

    def rng(self) -> random.Random:
        """A fresh generator for this model's jitter; each simulator owns one."""
        return random.Random(self.seed)

    def first_audio_delay_s(self, rng: random.Random) -> float:
        """Latency from a turn's first text to its first audio, drawn from ``rng``."""
        jitter = rng.uniform(0.0, self.jitter_s) if self.jitter_s > 0 else 0.0
        return self.first_audio_s + jitter
