"""The caller's keypad: keys pressed on the phone reach the LLM as one entry.

VoxEngine forwards each key the caller presses (`CallEvents.ToneReceived` → `AgentsClient.dtmf`)
and Line turns it into `UserDtmfSent(button)` (line/voice_agent_app.py `_convert_input_message`).
Line 0.2.19's `LlmAgent` keeps the event in its history but builds no LLM message from it
(line/llm_agent/llm_agent.py `_build_messages` reads only text, tool and custom entries), and its
default run filter does not start the agent on it: a key reaches no one. So keys are gathered
into an entry, as contact-centre IVRs and other agent frameworks do (an end key, or a pause):

- `#` ends an entry at once (the agent starts on that key);
- otherwise the entry ends `idle_s` after the last key (assumption: 2 s, a common IVR inter-digit
  timeout), and the agent is started by an injected turn (`agent/local_input.py`);
- keys still pending when the caller ends a spoken turn join that turn.

The entry is written into the history the agent sees as a user text (`prompt.keypad_note`),
placed where it was typed, on every later turn too (`rewrite`): the LLM remembers it as it
remembers speech. Digits never reach our logs or spans (a keypad entry can be a card number or
a PIN): only their count is logged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
from line.events import InputEvent, UserDtmfSent, UserTextSent, UserTurnEnded
from loguru import logger

from agent import prompt

KIND = "keypad"  # the injected turn's kind (agent/local_input.py)
END_KEY = "#"
KEYS = frozenset("0123456789*#ABCD")  # RFC 4733 DTMF events 0-15
IDLE_S = 2.0
MAX_KEYS = 64  # an entry this long ends by itself


@dataclass(frozen=True)
class _Entry:
    anchor: str  # the event id the entry is attached to: the turn it ended with
    note: str


class Keypad:
    """One call's keypad entries: gathered from the run filter, written into the agent's history."""

    def __init__(
        self,
        trigger: Callable[[str], None],
        clock: Callable[[], float] = time.perf_counter,
        idle_s: float = IDLE_S,
    ) -> None:
        self._trigger = trigger
        self._clock = clock
        self._idle_s = idle_s
        self._keys: list[str] = []
        self._last_key_at = 0.0
        self._waiting = False  # an injected turn is on its way for the pending keys
        self._entries: dict[str, _Entry] = {}
        self._changed = anyio.Event()
        self.keys_pressed = 0

    # ---- from the run filter (synchronous, never raises) ----

    def observe(self, event: InputEvent) -> bool:
        """True when the agent should start now on this event (the entry was ended by its key)."""
        if not isinstance(event, UserDtmfSent):
            return False
        button = event.button if event.button in KEYS else "?"
        self._keys.append(button)
        self.keys_pressed += 1
        self._last_key_at = self._clock()
        self._wake()
        return button == END_KEY or len(self._keys) >= MAX_KEYS

    # ---- the call-scoped task ----

    async def run(self) -> None:
        """End an entry `idle_s` after its last key by starting the agent (cancelled with the call)."""
        while True:
            changed = self._changed
            if self._keys and not self._waiting:
                due = self._last_key_at + self._idle_s
                if self._clock() >= due:
                    self._waiting = True
                    self._trigger(KIND)
                    continue
                with anyio.move_on_after(due - self._clock()):
                    await changed.wait()
            else:
                await changed.wait()

    # ---- in the agent's turn ----

    @property
    def pending(self) -> bool:
        """Keys wait for the end of their entry."""
        return bool(self._keys)

    def rewrite(self, event: InputEvent, *, ends_entry: bool = False) -> InputEvent:
        """`event` as the agent should see it. A turn that ends an entry (`ends_entry`: the key
        that ended it or the pause's injected turn; or the caller's spoken turn) becomes the
        caller's turn with the entry's note in it; every earlier entry sits in the history where
        it was made."""
        if self._keys and (ends_entry or isinstance(event, UserTurnEnded)):
            self._take(event.event_id)
        if not self._entries:
            return event
        history = [item for past in (event.history or []) for item in self._expand(past)]
        if event.event_id not in self._entries:
            return event.model_copy(update={"history": history})
        return self._expand(event)[-1].model_copy(update={"history": history})

    def _take(self, anchor: str) -> None:
        keys, self._keys = "".join(self._keys), []
        self._waiting = False
        self._entries[anchor] = _Entry(anchor, prompt.keypad_note(keys))
        logger.info(f"keypad: an entry of {len(keys)} keys from the caller")  # never the keys

    def _expand(self, event: InputEvent) -> list[InputEvent]:
        """The entry attached to `event`, as a caller's text and the end of the caller's turn."""
        entry = self._entries.get(event.event_id)
        if entry is None:
            return [event]
        text = UserTextSent(content=entry.note, event_id=f"{entry.anchor}-keys")
        if isinstance(event, UserTurnEnded):
            return [text, event.model_copy(update={"content": [*event.content, text]})]
        return [text, UserTurnEnded(content=[text], event_id=event.event_id)]

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
