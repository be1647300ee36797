"""How an accepted action ended on the phone, as VoxEngine reports it to the agent.

The scenario sends each milestone of an accepted `call_transfer` as a custom event on the agent's
websocket (`Cartesia.AgentsClient.custom` → Line `UserCustomSent`); docs/control-contract.md
"Outcome events" is the contract. This module reads one, strictly: anything else is `None` (not
ours) or `MalformedOutcome` (ours, unusable), and the caller logs and ignores it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

EVENT = "action_outcome"
STATUSES = ("ringing", "connected", "failed")
KNOWN_REASONS = ("busy", "no_answer", "rejected", "error", "target_hung_up", "caller_hung_up", "cancelled")
TelephonyStatus = Literal["ringing", "connected", "failed"]

_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
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

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def known_reason(self) -> str:
        return self.reason if self.reason in KNOWN_REASONS else "error"


def parse_outcome(metadata: object) -> TelephonyOutcome | None:
    """The outcome in a custom event's metadata; None when it is not an action outcome at all."""
    if not isinstance(metadata, Mapping) or metadata.get("vox_event") != EVENT:
        return None
    action_id, action, status = metadata.get("id"), metadata.get("action"), metadata.get("status")
    if not isinstance(action_id, str) or not _ID.fullmatch(action_id):
        raise MalformedOutcome("id")
    if action not in _ACTIONS:
        raise MalformedOutcome("action")
    if status not in STATUSES:
        raise MalformedOutcome("status")
    reason = metadata.get("reason")
    if status == "failed":
        if not isinstance(reason, str) or not _REASON.fullmatch(reason):
            raise MalformedOutcome("reason")
    elif reason is not None:
        raise MalformedOutcome("reason")
    code = metadata.get("sip_code")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 699):
        raise MalformedOutcome("sip_code")
    return TelephonyOutcome(action_id, str(action), cast(TelephonyStatus, status), reason, code)
