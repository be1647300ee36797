"""What the agent is told. Written for voice: short sentences, no markup."""

from __future__ import annotations

from collections.abc import Sequence

from agent.actions import Setback

INTRODUCTION = "Hi, thanks for calling. How can I help you today?"

SYSTEM_PROMPT = """\
You are a friendly, concise phone assistant answering a call. Everything you say is spoken aloud,
so use short plain sentences, no lists, no markdown, no emoji.

Help the caller with their question as well as you can. You have two telephony tools:

- call_transfer: connects the caller to a human colleague. Use it when the caller asks for a
  person, an agent, an operator or a human, or when you cannot help and they agree to be
  transferred. Pass a one or two sentence summary of what the caller needs so your colleague
  does not have to ask again. Do not say anything yourself before calling it: the tool tells the
  caller they are being connected.
- end_call: hangs up. Use it only when the caller says goodbye or confirms they need nothing
  else. First say a short, warm goodbye in the same reply, then call end_call.

If the caller asks you to, or a phone menu asks for it, you can press keys on the phone keypad
with send_dtmf, one key per call. What the caller types on their keypad reaches you as a note of
the keys pressed.

Never call a tool twice for the same request. If a tool says it cannot do that right now,
apologise briefly and offer to keep helping. If you are told that a transfer did not go through,
the caller is still with you: say so plainly and offer what you can do instead.
"""

TRANSFER_CONFIRMATION = "Sure, I'm connecting you with a colleague now. Please stay on the line."
# The call's own turns (agent/call_limits.py): spoken as they are, no LLM in between.
SILENCE_CHECK_IN = "Are you still there?"
SILENCE_GOODBYE = "I haven't heard from you, so I'll end the call now. Please call back any time. Goodbye!"
TIME_LIMIT_GOODBYE = (
    "I'm sorry, we've reached the time limit for this call, so I'll have to end it now. "
    "Thank you for calling, and goodbye!"
)
UNAVAILABLE = "I'm sorry, I can't do that on this call right now. Is there anything else I can help with?"

# Why an action did not happen, for the LLM (agent/conversation.py). Unknown reasons read as "error".
_SETBACKS = {
    "busy": "the line was busy",
    "no_answer": "nobody answered",
    "voicemail": "a voicemail answered instead of a person, so the caller was not put through to it",
    "rejected": "the call was declined",
    "target_hung_up": "the colleague hung up before the caller was connected",
    "not_accepted": "the phone system did not take the request",
    "error": "the call could not be connected",
}


def keypad_note(keys: str) -> str:
    """The caller's keypad entry as the LLM reads it, in the caller's turn."""
    return f"(Keys the caller pressed on their phone keypad: {keys})"


def setbacks_context(setbacks: Sequence[Setback]) -> str:
    """What the LLM is told when its transfer did not go through (the caller is still on the line)."""
    why = "; ".join(_SETBACKS.get(s.reason, _SETBACKS["error"]) for s in setbacks)
    return (
        f"The transfer to a human colleague did not go through: {why}. The caller is still on the "
        "line with you and has not heard this yet. Tell them honestly, in one or two short spoken "
        "sentences, and offer a next step: they can try again later, or you can take a message or "
        "keep helping. Do not call call_transfer again unless they ask for it."
    )
