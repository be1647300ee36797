"""Control actions: what the agent asks VoxEngine to do, and how each request ended.

One mechanism serves every action kind. A new kind is one `ActionKind` constant plus a tool
that announces it (see `agent/tools.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

BargeInPolicy = Literal["deliver", "cancel"]
# session_ended: no answer, but the VoxEngine session is gone (agent/retry_policy.py): for a
# hang-up, the effect asked for, not a failure.
OutcomeStatus = Literal["delivered", "failed", "cancelled", "session_ended"]


@dataclass(frozen=True)
class ActionKind:
    """A telephony action VoxEngine understands (`action` on the wire)."""

    name: str
    # A caller talking over the confirmation does not change their request, so by default the
    # action is still delivered when the confirming turn ends; "cancel" drops it instead.
    barge_in: BargeInPolicy = "deliver"
    ends_session: bool = False  # VoxEngine terminates the session once it took the action
    # VoxEngine reports how it went on the phone after accepting it (a transfer: ringing →
    # connected / failed; a hang-up: completed; agent/telephony_outcomes.py): the action is not
    # over at its acceptance.
    reports_outcome: bool = False


END_CALL = ActionKind("end_call", ends_session=True, reports_outcome=True)
CALL_TRANSFER = ActionKind("call_transfer", reports_outcome=True)


@dataclass(frozen=True)
class Setback:
    """An action that did not do what the caller was told it would: the agent should say so."""

    action: str
    reason: str  # a telephony reason ("busy", "no_answer", ...) or "not_accepted"


@dataclass(frozen=True)
class ControlAction:
    """One request for a telephony action. Its id is the idempotency key on every retry."""

    kind: ActionKind
    params: Mapping[str, str] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def body(self) -> dict[str, str]:
        """The JSON body of the control POST (docs/control-contract.md)."""
        return {"id": self.id, "action": self.kind.name, **self.params}


@dataclass(frozen=True)
class ActionOutcome:
    """How one action ended. Exactly one outcome is recorded per enqueued action."""

    action: ControlAction
    status: OutcomeStatus
    reason: str  # why it was released, refused or failed, e.g. "turn_ended", "http_503"
    attempts: int
    enqueued_at: float
    released_at: float | None
    finished_at: float

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"
