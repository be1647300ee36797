"""How an accepted action ended on the phone, as VoxEngine reports it to the agent.

The scenario sends each milestone of an accepted `call_transfer` (ringing → connected / failed),
and for an `end_call` the `completed` event just before it hangs up the caller, as a custom event
on the agent's websocket (`Cartesia.AgentsClient.custom` → Line `UserCustomSent`);
docs/control-contract.md "Outcome events" is the contract. Any outcome may carry
`playout_offset_ms`: where the action's effect fell against the end of the agent's audio at
VoxEngine (positive: silence before it; negative: a cut-off), or null when VoxEngine could not
know. A transfer to named destinations (docs/control-contract.md, issue #18) tries them in order:
each event names the `destination` and the 1-based `attempt` it is about; `attempt_failed` says one
attempt failed and the next is being dialled (the action stays under way), `failed` that none is
left; `connected` may say how answering-machine detection judged the target (`amd`: `human`, or
`timeout`: it did not finish and the target was taken for a human). This module reads one,
strictly: anything else is `None` (not ours) or `MalformedOutcome` (ours, unusable), and the
caller logs and ignores it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

EVENT = "action_outcome"
STATUSES = ("ringing", "attempt_failed", "connected", "failed", "completed")
FINAL_STATUSES = ("connected", "failed", "completed")  # the others: the action is still under way
KNOWN_REASONS = (
    "busy", "no_answer", "voicemail", "rejected", "error", "target_hung_up", "caller_hung_up", "cancelled",
)  # fmt: skip
AMD_RESULTS = ("human", "timeout")
TelephonyStatus = Literal["ringing", "attempt_failed", "connected", "failed", "completed"]
# Which action each status belongs to: `completed` is the hang-up's, the others a transfer's.
_STATUS_ACTION = {
    "ringing": "call_transfer",
    "attempt_failed": "call_transfer",
    "connected": "call_transfer",
    "completed": "end_call",
}
_WITH_REASON = ("failed", "attempt_failed")
MAX_ATTEMPT = 64  # a fallback chain tries each destination once; far fewer in practice
# A call lasts hours at most: an offset beyond a day is no measurement (assumption: a sane bound).
MAX_PLAYOUT_OFFSET_MS = 86_400_000

_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_DESTINATION = re.compile(r"[a-z0-9_-]{1,64}")
_REASON = re.compile(r"[a-z_]{1,32}")
_ACTIONS = ("call_transfer", "end_call")


class MalformedOutcome(ValueError):
    """A custom event that says it is an action outcome but breaks the contract."""


@dataclass(frozen=True)
class TelephonyOutcome:
    action_id: str
    action: str
    status: TelephonyStatus
    reason: str | None = None  # with "failed"; an unknown one reads as "error"
    sip_code: int | None = None
    # Reported by VoxEngine: ms from the end of the agent's audio to the effect, or None when it
    # reported null (unknown). Not reported at all (an older scenario): `playout_reported` False.
    playout_offset_ms: int | None = None
    playout_reported: bool = False
    destination: str | None = None  # the named destination of this attempt (a transfer)
    attempt: int | None = None  # 1-based, per transfer
    amd: str | None = None  # with "connected": "human" or "timeout"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def final(self) -> bool:
        """Nothing more will come of the action on the phone."""
        return self.status in FINAL_STATUSES

    @property
    def known_reason(self) -> str:
        return self.reason if self.reason in KNOWN_REASONS else "error"

    @property
    def playout(self) -> int | str | None:
        """The offset as recorded: ms, "unknown" (VoxEngine said null; never 0), or None if absent."""
        if not self.playout_reported:
            return None
        return "unknown" if self.playout_offset_ms is None else self.playout_offset_ms


def parse_outcome(metadata: object) -> TelephonyOutcome | None:
    """The outcome in a custom event's metadata; None when it is not an action outcome at all."""
    if not isinstance(metadata, Mapping) or metadata.get("vox_event") != EVENT:
        return None
    action_id, action, status = metadata.get("id"), metadata.get("action"), metadata.get("status")
    if not isinstance(action_id, str) or not _ID.fullmatch(action_id):
        raise MalformedOutcome("id")
    if action not in _ACTIONS:
        raise MalformedOutcome("action")
    if status not in STATUSES or _STATUS_ACTION.get(str(status), action) != action:
        raise MalformedOutcome("status")
    reason = metadata.get("reason")
    if status in _WITH_REASON:
        if not isinstance(reason, str) or not _REASON.fullmatch(reason):
            raise MalformedOutcome("reason")
    elif reason is not None:
        raise MalformedOutcome("reason")
    code = metadata.get("sip_code")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 699):
        raise MalformedOutcome("sip_code")
    offset = metadata.get("playout_offset_ms")
    if offset is not None and (
        isinstance(offset, bool) or not isinstance(offset, int) or abs(offset) > MAX_PLAYOUT_OFFSET_MS
    ):
        raise MalformedOutcome("playout_offset_ms")
    destination, attempt, amd = metadata.get("destination"), metadata.get("attempt"), metadata.get("amd")
    if destination is not None and (
        not isinstance(destination, str) or not _DESTINATION.fullmatch(destination)
    ):
        raise MalformedOutcome("destination")
    if attempt is not None and (
        isinstance(attempt, bool) or not isinstance(attempt, int) or not 1 <= attempt <= MAX_ATTEMPT
    ):
        raise MalformedOutcome("attempt")
    if amd is not None and (status != "connected" or amd not in AMD_RESULTS):
        raise MalformedOutcome("amd")
    return TelephonyOutcome(
        action_id,
        str(action),
        cast(TelephonyStatus, status),
        reason,
        code,
        playout_offset_ms=offset,
        playout_reported="playout_offset_ms" in metadata,
        destination=destination,
        attempt=attempt,
        amd=amd,
    )
