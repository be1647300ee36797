"""The phone side of a transfer, as the lab's VoxEngine emulator plays it after accepting one.

It mirrors `voxengine/scenario.js` (the transfer leg, the ring timeout, the whisper, the bridge,
the outcome events sent to the agent with `client.custom`) on a script of what the telephony does,
in the format of `voxengine/contract/outcome_cases.json`: both are replayed against those cases,
so the two cannot drift. Each rule names the scenario's behaviour it copies (docs/control-contract.md
"Outcome events").

Script events, at times after the attempt started: `dial_error` (`VoxEngine.callPSTN`
throws), `ringing`, `answered`, `amd_human` / `amd_machine` (answering-machine detection's result,
`AMD.Events.DetectionComplete`), `failed` (with a SIP `code`), `disconnected` (the target hangs
up), `whisper_done` (the target's playback finished); the ring timeout, the AMD timeout and the
whisper timeout fire by themselves.

Named destinations (issue #18, docs/control-contract.md): a transfer tries the named destination
and then its `fallback` list, one `TransferPlay` per attempt. Every outcome event names its
`destination` and `attempt`; an attempt that fails with a reason in `FALLBACK_REASONS` while a
destination is left says `attempt_failed` and the next one is dialled; the last one's failure is
the final `failed`. With AMD on, an answered target is not bridged until detection says human
(or does not finish within `amd_timeout_s`: taken for a human, `"amd": "timeout"`); a machine is
the attempt's failure with reason `voicemail`, the caller never hears it. `Destination.behaviour`
scripts each kind of target (`script_for`).

Cases also script what happens to the session (`caller_hangs_up`, `end_call`, `agent_gone`);
a `TransferPlay` leaves those to whoever drives the emulator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

__all__ = [
    "DEFAULT_DESTINATION",
    "FALLBACK_REASONS",
    "Destination",
    "Pace",
    "TelephonyStep",
    "TransferPlay",
    "TransferScript",
    "TransferSettings",
    "fallback_chain",
    "reason_for_code",
    "script_for",
    "whisper_text",
]

StepEvent = Literal[
    "dial_error", "ringing", "answered", "amd_human", "amd_machine", "failed", "disconnected",
    "whisper_done", "caller_hangs_up", "end_call", "agent_gone",
]  # fmt: skip
Phase = Literal["dialling", "ringing", "detecting", "whispering", "connected", "failed", "ended"]
Behaviour = Literal["human", "busy", "no_answer", "voicemail", "amd_timeout", "rejected"]
# Failures after which the scenario dials the next destination (the contract's attempt_failed).
FALLBACK_REASONS = ("busy", "no_answer", "voicemail", "rejected", "error")
DEFAULT_DESTINATION = "default"  # the legacy TRANSFER_NUMBER's name in outcome events
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
    """ApplicationStorage TRANSFER_RING_TIMEOUT_S (or a destination's `ring_timeout_s`),
    TRANSFER_WHISPER, TRANSFER_WHISPER_TIMEOUT_S, TRANSFER_AMD (on/off), TRANSFER_AMD_TIMEOUT_S.
    AMD is off here unless a script asks for it: the scripts of the outcome cases have no AMD
    steps (the scenario's own default is on)."""

    ring_timeout_s: float = 30.0
    whisper: bool = True
    whisper_timeout_s: float = 15.0
    amd: bool = False
    amd_timeout_s: float = 5.0


@dataclass(frozen=True)
class TransferScript:
    steps: tuple[TelephonyStep, ...]
    settings: TransferSettings = field(default_factory=TransferSettings)

    @classmethod
    def from_case(cls, case: Mapping[str, Any]) -> TransferScript:
        """An `outcome_cases.json` case's script and settings. AMD is on unless the case turns it
        off, and there `answered` is a person the detector judges `HUMAN` at that same moment
        (voxengine/contract/README.md, "Script events")."""
        settings = TransferSettings(**{"amd": True, **case.get("settings", {})})
        steps: list[TelephonyStep] = []
        for step in case["script"]:
            at = float(step.get("at_ms", 0)) / 1000
            steps.append(TelephonyStep(at, step["event"], step.get("code")))
            if step["event"] == "answered" and settings.amd:
                steps.append(TelephonyStep(at, "amd_human"))
        return cls(tuple(steps), settings)

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


@dataclass(frozen=True)
class Pace:
    """When things happen on a scripted target's leg, in seconds after its dial."""

    ring_s: float = 0.2
    answer_s: float = 0.6  # busy / rejected: the failure comes then
    amd_s: float = 0.5  # detection's result, after the answer
    whisper_s: float = 0.6  # the whisper's playback, after detection
    ring_timeout_s: float = 1.5  # no_answer: the scenario's ring timeout
    amd_timeout_s: float = 1.5


@dataclass(frozen=True)
class Destination:
    """One entry of ApplicationStorage TRANSFER_DESTINATIONS, and what its phone does."""

    name: str
    behaviour: Behaviour = "human"
    fallback: tuple[str, ...] = ()
    extension: str = ""  # keys played on its leg once a human answered, before the whisper


def script_for(destination: Destination, pace: Pace = Pace(), *, whisper: bool = True) -> TransferScript:
    """What a target of this behaviour does once dialled, with AMD on (the scenario's default).
    Sources of each: `reason_for_code` (busy 486, rejected 603); no answer is the scenario's ring
    timeout; voicemail and human are `AMD.Events.DetectionComplete` results; amd_timeout is a
    detection that never finishes (assumption: how often real AMD does is not documented)."""
    ring = TelephonyStep(pace.ring_s, "ringing")
    answered, detected = pace.answer_s, pace.answer_s + pace.amd_s
    steps: dict[Behaviour, tuple[TelephonyStep, ...]] = {
        "human": (
            ring,
            TelephonyStep(answered, "answered"),
            TelephonyStep(detected, "amd_human"),
            TelephonyStep(detected + pace.whisper_s, "whisper_done"),
        ),
        "busy": (ring, TelephonyStep(answered, "failed", 486)),
        "rejected": (ring, TelephonyStep(answered, "failed", 603)),
        "no_answer": (ring,),
        "voicemail": (ring, TelephonyStep(answered, "answered"), TelephonyStep(detected, "amd_machine")),
        "amd_timeout": (
            ring,
            TelephonyStep(answered, "answered"),
            TelephonyStep(answered + pace.amd_timeout_s + pace.whisper_s, "whisper_done"),
        ),
    }
    settings = TransferSettings(
        ring_timeout_s=pace.ring_timeout_s, whisper=whisper, amd=True, amd_timeout_s=pace.amd_timeout_s
    )
    return TransferScript(steps[destination.behaviour], settings)


def fallback_chain(name: str, destinations: Mapping[str, Destination]) -> list[Destination]:
    """The named destination, then its fallbacks in order, each at most once (no cycles) and only
    those that exist (docs/control-contract.md, ApplicationStorage TRANSFER_DESTINATIONS)."""
    chain: list[Destination] = []
    for candidate in (name, *destinations[name].fallback):
        if candidate in destinations and all(d.name != candidate for d in chain):
            chain.append(destinations[candidate])
    return chain


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
    destination: str = DEFAULT_DESTINATION
    attempt: int = 1
    last: bool = True  # no fallback left: a failure is the transfer's
    extension: str = ""
    phase: Phase = "dialling"
    rang: bool = False
    amd: str | None = None  # "human" or "timeout" once detection decided (AMD on)
    extension_played: str | None = None  # the keys played on the target's leg
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
        elif event == "amd_human" and self.phase == "detecting":
            await self._human("human", tg)
        elif event == "amd_machine" and self.phase == "detecting":
            await self._fail("voicemail", None, "a machine answered (AMD)")
        elif event == "whisper_done" and self.phase == "whispering":
            await self._connect("whisper done")
        elif event == "failed" and self.phase == "ringing":
            await self._fail(reason_for_code(step.code), step.code, f"failed {step.code}")
        elif event == "disconnected" and self.phase == "ringing":
            await self._fail("error", None, "disconnected before answer")
        elif event in ("disconnected", "failed") and self.phase in ("detecting", "whispering"):
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
        self._note("answered")
        settings = self.script.settings
        if not settings.amd:
            await self._human(None, tg)
            return
        self.phase = "detecting"  # nothing is said to the target, nor is it bridged, until it is judged
        tg.start_soon(self._timeout, anyio.current_time() + settings.amd_timeout_s, "detecting",
                      lambda: self._human("timeout", tg))  # fmt: skip

    async def _human(self, amd: str | None, tg: Any) -> None:
        """A person answered (or AMD is off, or did not finish: taken for one)."""
        self.amd = amd
        self.phase = "whispering"
        if amd is not None:
            self._note(f"amd: {amd}")
        settings = self.script.settings
        if self.extension:
            self.extension_played = self.extension  # played on the target's leg, before the whisper
            self._note(f"extension: {len(self.extension)} keys")
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
        if not self.last and reason in FALLBACK_REASONS:  # the next destination is dialled
            self._over("failed", "agent" if self.agent_present() else "nobody")
            await self._tell("attempt_failed", reason, code)
            await self.on_end("attempt_failed")
            return
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
            "destination": self.destination,
            "attempt": self.attempt,
        }
        if status == "connected" and self.amd is not None:
            metadata["amd"] = self.amd
        if reason is not None:
            metadata["reason"] = reason
        if code is not None:
            metadata["sip_code"] = code
        self._note(f"told the agent: {status}" + (f" {reason}" if reason else ""))
        await self.tell_agent(metadata)

    def _note(self, what: str) -> None:
        self.log.append((self.clock(), what))
