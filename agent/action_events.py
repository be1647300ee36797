"""The steps of one control action's life, as typed events for `CallObserver.action_event`.

Each word means one thing. "held" is the tool's answer (`RequestResult`): the control plane
keeps the action until the confirming turn ends. "accepted" is only VoxEngine's answer to a POST
(`{"ok": true}`, docs/control-contract.md), the `reason` of an `Answered` and of a `Delivered`.
The outcome's event is named as its `ActionOutcome.status`: `Delivered` is status "delivered".

| step (`name`)          | event                | when                                               |
|------------------------|----------------------|----------------------------------------------------|
| `enqueued`             | `Enqueued`           | a tool's request is held (`RequestResult` "held")  |
| `armed`                | `Armed`              | the agent turn that carries the confirmation began |
| `released`             | `Released`           | the flush policy let it go (`reason`: turn_ended…) |
| `sent`                 | `Sent`               | one POST attempt left                              |
| `answered`             | `Answered`           | that attempt's answer (`reason` "accepted" = ok)   |
| `retry`                | `Retrying`           | a further attempt is scheduled                     |
| `delivered`            | `Delivered`          | outcome: VoxEngine accepted it                     |
| `failed`               | `Failed`             | outcome: refused, or never accepted in time        |
| `cancelled`            | `Cancelled`          | outcome: dropped before it was sent (barge-in…)    |
| `session_ended`        | `SessionEnded`       | outcome: no answer, but the session is gone        |
| `telephony.<status>`   | `TelephonyReported`  | VoxEngine's outcome event on the phone (ringing…)  |
| `own_side_ended`       | `OwnSideEnded`       | a hang-up ended the agent's side (Line `end_call`) |

Span event names keep their documented words (docs/tracing.md: `Delivered` is the span event
`accepted`); `telemetry/call_spans.py` maps them explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Enqueued:
    kind: str  # the action kind's name
    name: ClassVar[str] = "enqueued"


@dataclass(frozen=True)
class Armed:
    turn: int  # the carrier turn's sequence number
    name: ClassVar[str] = "armed"


@dataclass(frozen=True)
class Released:
    reason: str  # "turn_ended", "no_speech", "max_hold", "call_ended", ...
    name: ClassVar[str] = "released"


@dataclass(frozen=True)
class Sent:
    attempt: int  # 1-based
    name: ClassVar[str] = "sent"


@dataclass(frozen=True)
class Answered:
    attempt: int
    reason: str  # "accepted", "http_503", "timeout", "refused:<code>", ...
    status: int | None = None  # the HTTP status, when an answer came
    peer: tuple[str, int] | None = None  # the address that answered
    name: ClassVar[str] = "answered"


@dataclass(frozen=True)
class Retrying:
    attempt: int  # the attempt that is retried
    reason: str
    wait_s: float | None
    name: ClassVar[str] = "retry"


@dataclass(frozen=True)
class Finished:
    """The action's outcome (one per action): its `name` is the `ActionOutcome.status`."""

    reason: str
    attempts: int
    name: ClassVar[str] = "finished"


@dataclass(frozen=True)
class Delivered(Finished):
    name: ClassVar[str] = "delivered"


@dataclass(frozen=True)
class Failed(Finished):
    name: ClassVar[str] = "failed"


@dataclass(frozen=True)
class Cancelled(Finished):
    name: ClassVar[str] = "cancelled"


@dataclass(frozen=True)
class SessionEnded(Finished):
    name: ClassVar[str] = "session_ended"


@dataclass(frozen=True)
class TelephonyReported:
    """VoxEngine's outcome event for a delivered action (agent/telephony_outcomes.py)."""

    status: str  # "ringing", "attempt_failed", "connected", "failed", "completed"
    reason: str | None = None
    sip_code: int | None = None
    playout_offset_ms: int | str | None = None  # ms, "unknown" (VoxEngine said null), None: absent
    destination: str | None = None
    dial_attempt: int | None = None  # 1-based, per transfer
    amd: str | None = None
    name: ClassVar[str] = "telephony"


@dataclass(frozen=True)
class OwnSideEnded:
    reason: str  # "completed", "grace", "failed", "session_ended"
    name: ClassVar[str] = "own_side_ended"


ActionEvent = (
    Enqueued | Armed | Released | Sent | Answered | Retrying | Finished | TelephonyReported | OwnSideEnded
)


def step_name(event: ActionEvent) -> str:
    """The event's word in the table above (`telephony.<status>` for VoxEngine's outcomes)."""
    if isinstance(event, TelephonyReported):
        return f"telephony.{event.status}"
    return event.name


def details(event: ActionEvent) -> dict[str, object]:
    """The event's known fields (None left out), for logs and records; not the status a
    `telephony.<status>` step name already says."""
    said = "status" if isinstance(event, TelephonyReported) else None
    return {k: v for k, v in vars(event).items() if v is not None and k != said}
