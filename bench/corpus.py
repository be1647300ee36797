"""The alignment corpus: scripted calls whose confirmations last 0.5 s to 12 s at a spoken pace.

Each call asks for one action: a transfer (the LLM may add a lead-in, then the tool speaks the
fixed `prompt.TRANSFER_CONFIRMATION`, 13 words, so transfers last at least ~4 s) or a goodbye
(the LLM says goodbye, 1 to ~38 words, then calls `end_call`). Pace is drawn per call from
2.5–3.2 words/s, with 0.2 s + up to 0.3 s of first-audio jitter. Some callers talk over the
confirmation; some harnesses close the socket the moment `end_call` arrives. Every call has a
reference token in what the caller says, so one scripted LLM serves many calls at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from agent import prompt
from lab.harness import CloseAfterEndCall
from lab.scenarios import goodbye_reply, transfer_reply
from lab.scripted_llm import LlmReply
from lab.tts_model import TtsModel

Kind = Literal["transfer", "goodbye"]

MIN_SPEECH_S, MAX_SPEECH_S = 0.5, 12.0
MIN_PACE, MAX_PACE = 2.5, 3.2  # words per second
FIRST_AUDIO_S, FIRST_AUDIO_JITTER_S = 0.2, 0.3
BARGE_IN_SHARE = 0.15
SOCKET_CLOSE_SHARE = 0.2  # of goodbyes not talked over: the harness closes right after end_call
TRANSFER_SHARE = 0.75  # of calls whose confirmation is long enough to be a transfer
BARGE_IN_TEXT = "oh wait, sorry, one more thing"

_CONFIRMATION_WORDS = len(prompt.TRANSFER_CONFIRMATION.split())
_FILLER = (
    "Thanks so much for calling today, it was a real pleasure to help you sort this out. "
    "I hope the rest of your week goes smoothly and that everything works out the way you want. "
    "Take good care of yourself, and please do call us again whenever you need anything at all. "
    "Have a wonderful day"
).split()
_LEAD_IN = (
    "Of course, I completely understand that you would rather talk this through with a person, "
    "and one of my colleagues in the billing team will be able to look at your account in detail"
).split()


@dataclass(frozen=True)
class CallSpec:
    """One scripted call of the corpus (picklable: it crosses to worker processes)."""

    index: int
    kind: Kind
    words_per_s: float
    words: int  # spoken in the confirming turn
    llm_text: str  # what the LLM says before its tool call
    close_after_end_call: CloseAfterEndCall
    barge_in_after_s: float | None  # after the confirming turn's first audio
    seed: int

    @property
    def token(self) -> str:
        return f"ref{self.index:06d}x"

    @property
    def session(self) -> str:
        return f"c{self.index:06d}"

    @property
    def call_id(self) -> str:
        return f"bench-{self.index:06d}"

    @property
    def action(self) -> str:
        return "call_transfer" if self.kind == "transfer" else "end_call"

    @property
    def planned_speech_s(self) -> float:
        return self.words / self.words_per_s

    @property
    def utterance(self) -> str:
        ask = "Can I talk to a real person, please?" if self.kind == "transfer" else "That's all, thanks."
        return f"{ask} My reference is {self.token}."

    def tts(self) -> TtsModel:
        return TtsModel(
            first_audio_s=FIRST_AUDIO_S,
            jitter_s=FIRST_AUDIO_JITTER_S,
            words_per_s=self.words_per_s,
            seed=self.seed,
        )

    def reply(self) -> LlmReply:
        base = transfer_reply(self.llm_text) if self.kind == "transfer" else goodbye_reply(self.llm_text)
        return LlmReply(text=base.text, tool_calls=base.tool_calls, when_user_says=self.token)


def goodbye_text(words: int) -> str:
    """A goodbye of exactly `words` words, ending with "Goodbye!"."""
    return " ".join([*_FILLER[: max(0, words - 1)], "Goodbye!"])


def lead_in_text(words: int) -> str:
    """A lead-in of `words` words said before the transfer tool's own confirmation."""
    if words <= 0:
        return ""
    picked = _LEAD_IN[:words]
    return " ".join(picked).rstrip(",") + ". "


def make_corpus(n: int, *, seed: int = 0, max_speech_s: float = MAX_SPEECH_S) -> list[CallSpec]:
    """`n` calls with confirmation lengths spread uniformly over 0.5–`max_speech_s` seconds."""
    rng = random.Random(seed)
    specs = []
    for index in range(n):
        pace = rng.uniform(MIN_PACE, MAX_PACE)
        # Stratified over the range, so even a small corpus covers short and long confirmations.
        target_s = MIN_SPEECH_S + (max_speech_s - MIN_SPEECH_S) * (index + rng.random()) / n
        words = max(1, round(target_s * pace))
        can_transfer = _CONFIRMATION_WORDS <= words <= _CONFIRMATION_WORDS + len(_LEAD_IN)
        kind: Kind = "transfer" if can_transfer and rng.random() < TRANSFER_SHARE else "goodbye"
        if kind == "transfer":
            llm_text = lead_in_text(words - _CONFIRMATION_WORDS)
        else:
            words = min(words, len(_FILLER) + 1)
            llm_text = goodbye_text(words)
        barge = rng.random() < BARGE_IN_SHARE
        barge_after = rng.uniform(0.25, 0.85) * words / pace if barge else None
        close: CloseAfterEndCall = "no" if barge else "after_speech"
        if kind == "goodbye" and not barge and rng.random() < SOCKET_CLOSE_SHARE:
            close = "immediately"
        specs.append(CallSpec(index, kind, pace, words, llm_text, close, barge_after, seed * 100_003 + index))
    rng.shuffle(specs)  # mix lengths, so concurrent calls overlap in every phase
    return specs
