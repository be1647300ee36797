"""The phone side of a transfer, as the lab's VoxEngine emulator plays it after accepting one.

It mirrors `voxengine/scenario.js` (the transfer leg, the ring timeout, the whisper, the bridge,
the outcome events sent to the agent with `client.custom`) on a script of what the telephony does,
in the format of `voxengine/contract/outcome_cases.json`: both are replayed against those cases,
so the two cannot drift. Each rule names the scenario's behaviour it copies (docs/control-contract.md
"Outcome events").

Script events, at times after the transfer was accepted: `dial_error` (`VoxEngine.callPSTN`
throws), `ringing`, `answered`, `failed` (with a SIP `code`), `disconnected` (the target hangs up),
`whisper_done` (the target's playback finished); the ring timeout and the whisper timeout fire by
themselves. Cases also script what happens to the session (`caller_hangs_up`, `end_call`,
`agent_gone`); a `TransferPlay` leaves those to whoever drives the emulator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

__all__ = [
    "TelephonyStep",
    "TransferPlay",
    "TransferScript",
    "TransferSettings",
    "reason_for_code",
    "whisper_text",
]

StepEvent = Literal[
    "dial_error", "ringing", "answered", "failed", "disconnected", "whisper_done",
    "caller_hangs_up", "end_call", "agent_gone",
]  # fmt: skip
Phase = Literal["dialling", "ringing", "whispering", "connected", "failed", "ended"]
CallerWith = Literal["agent", "target", "nobody"]
WHISPER_MAX_UNITS = 1500


def reason_for_code(code: int | None) -> str:
    """The outcome reason for a `CallEvents.Failed` code (docs/control-contract.md)."""
    if code in (486, 600):
        return "busy"
    if code in (408, 480):
        return "no_answer"
    if code == 603:
        return "rejected"
    return "error"


def whisper_text(summary: str) -> str:
    """The summary as the scenario whispers it: its first 1500 UTF-16 units (`Call.say` refuses
    longer text), never cut inside a surrogate pair."""
    units = summary.encode("utf-16-le")
    if len(units) <= 2 * WHISPER_MAX_UNITS:
        return summary
    return units[: 2 * WHISPER_MAX_UNITS].decode("utf-16-le", errors="ignore")


@dataclass(frozen=True)
class TelephonyStep:
    at_s: float
    event: StepEvent
    code: int | None = None


@dataclass(frozen=True)
class TransferSettings:
    """ApplicationStorage TRANSFER_RING_TIMEOUT_S, TRANSFER_WHISPER, TRANSFER_WHISPER_TIMEOUT_S."""

    ring_timeout_s: float = 30.0
    whisper: bool = True
    whisper_timeout_s: float = 15.0


@dataclass(frozen=True)
class TransferScript:
    steps: tuple[TelephonyStep, ...]
    settings: TransferSettings = field(default_factory=TransferSettings)

    @classmethod
    def from_case(cls, case: Mapping[str, Any]) -> TransferScript:
        """An `outcome_cases.json` case's script and settings."""
        steps = tuple(
            TelephonyStep(float(step.get("at_ms", 0)) / 1000, step["event"], step.get("code"))
            for step in case["script"]
        )
        return cls(steps, TransferSettings(**case.get("settings", {})))

    @classmethod
    def answers(cls, *, ring_s: float = 0.3, answer_s: float = 0.8, whisper_s: float = 1.0) -> TransferScript:
        """The target rings, answers, and hears the whisper to its end."""
        return cls(
            (
                TelephonyStep(ring_s, "ringing"),
                TelephonyStep(answer_s, "answered"),
                TelephonyStep(answer_s + whisper_s, "whisper_done"),
            )
        )

    @classmethod
    def busy(cls, *, ring_s: float = 0.3, fail_s: float = 0.8) -> TransferScript:
        return cls((TelephonyStep(ring_s, "ringing"), TelephonyStep(fail_s, "failed", 486)))


@dataclass
class TransferPlay:
    """One accepted transfer playing out: the phase it is in, and what each party heard."""

    action_id: str
    summary: str
    script: TransferScript
    tell_agent: Callable[[dict[str, Any]], Awaitable[None]]  # `client.custom({metadata})`
    agent_present: Callable[[], bool]
    on_end: Callable[[str], Awaitable[None]]  # "failed" (back to the agent), "connected", or the session ends
    clock: Callable[[], float]
    phase: Phase = "dialling"
    rang: bool = False
    whisper: str | None = None  # what the target heard before the bridge
    caller_with: CallerWith = "agent"
    log: list[tuple[float, str]] = field(default_factory=list)  # (time, what happened)
    over: anyio.Event = field(default_factory=anyio.Event)  # failed, connected or ended

    async def run(self) -> None:
        """Play the script and the ring and whisper timeouts until the transfer is over."""
        start = anyio.current_time()
        settings = self.script.settings
        steps = sorted(self.script.steps, key=lambda s: s.at_s)
        if steps and steps[0].event == "dial_error":  # `callPSTN` throws: no leg at all
            await self._fail("error", None, "dial failed")
            return
        self.phase = "ringing"
        self._note("dialled")
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._timeout, start + settings.ring_timeout_s, "ringing", self._ring_timeout)
            for step in steps:
                await anyio.sleep_until(start + step.at_s)
                if self.over.is_set():
                    break
                await self.step(step, tg)
            await self.over.wait()
            tg.cancel_scope.cancel()  # no timer outlives the transfer

    async def step(self, step: TelephonyStep, tg: Any) -> None:
        event = step.event
        if event == "ringing" and self.phase == "ringing" and not self.rang:
            self.rang = True
            await self._tell("ringing")
        elif event == "answered" and self.phase == "ringing":
            await self._answered(tg)
        elif event == "whisper_done" and self.phase == "whispering":
            await self._connect("whisper done")
        elif event == "failed" and self.phase == "ringing":
            await self._fail(reason_for_code(step.code), step.code, f"failed {step.code}")
        elif event == "disconnected" and self.phase == "ringing":
            await self._fail("error", None, "disconnected before answer")
        elif event in ("disconnected", "failed") and self.phase == "whispering":
            await self._fail("target_hung_up", step.code, "target hung up during the whisper")
        # caller_hangs_up, end_call and agent_gone happen to the session, not to this leg: whoever
        # drives the emulator plays them (`hang_up`, a control request, `agent_gone`).

    async def cancel(self, reason: str) -> None:
        """The session is ending (the caller hung up, or the agent's end_call): the dial stops."""
        if not self.over.is_set():
            await self._tell("failed", reason)  # best effort, before the agent is closed
            self._over("ended", "nobody")
            self._note(f"cancelled: {reason}")
            await self.on_end(reason)

    def _over(self, phase: Phase, caller_with: CallerWith) -> None:
        self.phase, self.caller_with = phase, caller_with
        self.over.set()

    async def _answered(self, tg: Any) -> None:
        self.phase = "whispering"
        self._note("answered")
        settings = self.script.settings
        if settings.whisper and self.summary:
            self.whisper = whisper_text(self.summary)  # said to the target's leg only
            self._note("whisper started")
            tg.start_soon(self._timeout, anyio.current_time() + settings.whisper_timeout_s, "whispering",
                          self._whisper_timeout)  # fmt: skip
        else:
            await self._connect("no whisper")

    async def _connect(self, why: str) -> None:
        await self._tell("connected")  # before the agent is detached
        self._over("connected", "target")
        self._note(f"bridged ({why})")
        await self.on_end("connected")

    async def _fail(self, reason: str, code: int | None, why: str) -> None:
        self._note(f"failed: {why}")
        if self.agent_present():  # the caller stays with the agent, who is told
            self._over("failed", "agent")
            await self._tell("failed", reason, code)
            await self.on_end("failed")
            return
        self._over("ended", "nobody")  # nobody to return to: apology, hang-up
        self._note("apology and hang-up")
        await self.on_end("transfer failed")

    async def _ring_timeout(self) -> None:
        await self._fail("no_answer", None, "ring timeout")

    async def _whisper_timeout(self) -> None:
        await self._connect("whisper timeout")

    async def _timeout(self, deadline: float, phase: str, fire: Callable[[], Awaitable[None]]) -> None:
        await anyio.sleep_until(deadline)
        if self.phase == phase:
            await fire()

    async def _tell(self, status: str, reason: str | None = None, code: int | None = None) -> None:
        if not self.agent_present():
            return
        metadata: dict[str, Any] = {
            "vox_event": "action_outcome",
            "id": self.action_id,
            "action": "call_transfer",
            "status": status,
        }
        if reason is not None:
            metadata["reason"] = reason
        if code is not None:
            metadata["sip_code"] = code
        self._note(f"told the agent: {status}" + (f" {reason}" if reason else ""))
        await self.tell_agent(metadata)

    def _note(self, what: str) -> None:
        self.log.append((self.clock(), what))
