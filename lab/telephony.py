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
scripts each kind of target (`script_for`; `CONTRACT_PACE` is destination_cases.json's times);
`parse_destinations` reads ApplicationStorage TRANSFER_DESTINATIONS as the scenario does. After
a human, a destination's extension is keyed (`w` as `p`) and the whisper waits 300 ms per symbol.

Cases also script what happens to the session (`caller_hangs_up`, `end_call`, `agent_gone`);
a `TransferPlay` leaves those to whoever drives the emulator.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

__all__ = [
    "CONTRACT_PACE",
    "DEFAULT_DESTINATION",
    "FALLBACK_REASONS",
    "Destination",
    "Pace",
    "TelephonyStep",
    "TransferPlay",
    "TransferScript",
    "TransferSettings",
    "fallback_chain",
    "parse_destinations",
    "reason_for_code",
    "script_for",
    "whisper_text",
]

StepEvent = Literal[
    "dial_error", "ringing", "answered", "amd_human", "amd_machine", "failed", "disconnected",
    "whisper_done", "caller_hangs_up", "end_call", "agent_gone",
]  # fmt: skip
Phase = Literal[
    "dialling", "ringing", "detecting", "extension", "whispering", "connected", "failed", "ended"
]  # fmt: skip
Behaviour = Literal[
    "human", "busy", "no_answer", "voicemail", "amd_timeout", "rejected", "error", "dial_error", "silent"
]  # fmt: skip
# Answered and not bridged yet (scenario.js ANSWERED_STAGES): the agent's keys go to this leg.
ANSWERED_PHASES = ("detecting", "extension", "whispering")
# Failures after which the scenario dials the next destination (the contract's attempt_failed).
FALLBACK_REASONS = ("busy", "no_answer", "voicemail", "rejected", "error")
DEFAULT_DESTINATION = "default"  # the legacy TRANSFER_NUMBER's name in outcome events
CallerWith = Literal["agent", "target", "nobody"]
WHISPER_MAX_UNITS = 1500
# voxengine/scenario.js EXTENSION_MS_PER_SYMBOL, an ASSUMPTION of the scenario (Call.sendDigits has
# no completion event): the whisper starts this long per extension symbol after the digits.
EXTENSION_S_PER_SYMBOL = 0.3
# TRANSFER_DESTINATIONS validation, as voxengine/scenario.js DESTINATION.
_NAME = re.compile(r"[a-z0-9_-]{1,64}")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_SIP = re.compile(r"sips?:\S{1,250}")
_EXTENSION = re.compile(r"[0-9*#pw]{1,32}")
_FIELDS = ("to", "ring_timeout_s", "caller_id", "fallback", "extension")
_RING_TIMEOUT_S = (1, 120)
_MAX_FALLBACKS = 10

log = logging.getLogger(__name__)


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
    whisper_s: float | None = None  # the whisper's playback on this leg; None: `whisper_done` steps decide

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


# The behaviours' times of voxengine/contract/README.md ("Behaviours"): Ringing at 100 ms, the
# answer (or the failure) at 300, the detector's verdict at 600, a whisper played in 200 ms. The
# contract calls them the lab's model, not platform facts.
CONTRACT_PACE = Pace(ring_s=0.1, answer_s=0.3, amd_s=0.3, whisper_s=0.2)


@dataclass(frozen=True)
class Destination:
    """One entry of ApplicationStorage TRANSFER_DESTINATIONS, and what its phone does."""

    name: str
    behaviour: Behaviour = "human"
    fallback: tuple[str, ...] = ()
    extension: str = ""  # keys played on its leg once a human answered, before the whisper
    to: str | None = None  # the E.164 number or sip: URI dialled (None: the lab's phone, unnamed)
    caller_id: str | None = None  # None: PSTN_CALLER_ID
    ring_timeout_s: float | None = None  # None: TRANSFER_RING_TIMEOUT_S


def script_for(
    destination: Destination,
    pace: Pace = Pace(),
    *,
    whisper: bool = True,
    settings: TransferSettings | None = None,
) -> TransferScript:
    """What a target of this behaviour does once dialled, with AMD on (the scenario's default)
    unless `settings` (ApplicationStorage's TRANSFER_* keys) say otherwise; a destination's own
    `ring_timeout_s` wins. Sources of each: `reason_for_code` (busy 486, rejected 603, error 404);
    no answer is the scenario's ring timeout; voicemail and human are `AMD.Events.DetectionComplete`
    results; amd_timeout is a detection that never finishes (assumption: how often real AMD does
    is not documented); dial_error is `VoxEngine.callPSTN` / `callSIP` throwing; silent never
    answers nor fails (destination_cases.json: a destination without a behaviour)."""
    ring = TelephonyStep(pace.ring_s, "ringing")
    answered, detected = pace.answer_s, pace.answer_s + pace.amd_s
    steps: dict[Behaviour, tuple[TelephonyStep, ...]] = {
        "human": (ring, TelephonyStep(answered, "answered"), TelephonyStep(detected, "amd_human")),
        "busy": (ring, TelephonyStep(answered, "failed", 486)),
        "rejected": (ring, TelephonyStep(answered, "failed", 603)),
        "error": (ring, TelephonyStep(answered, "failed", 404)),
        "no_answer": (ring,),
        "voicemail": (ring, TelephonyStep(answered, "answered"), TelephonyStep(detected, "amd_machine")),
        "amd_timeout": (ring, TelephonyStep(answered, "answered")),
        "dial_error": (TelephonyStep(0.0, "dial_error"),),
        "silent": (),
    }
    if settings is None:
        settings = TransferSettings(
            ring_timeout_s=pace.ring_timeout_s, whisper=whisper, amd=True, amd_timeout_s=pace.amd_timeout_s
        )
    if destination.ring_timeout_s is not None:
        settings = TransferSettings(**{**settings.__dict__, "ring_timeout_s": destination.ring_timeout_s})
    return TransferScript(steps[destination.behaviour], settings, whisper_s=pace.whisper_s)


def parse_destinations(raw: str, behaviours: Mapping[str, Behaviour] | None = None) -> list[Destination]:
    """ApplicationStorage TRANSFER_DESTINATIONS as voxengine/scenario.js `parseDestinations` reads
    it: a JSON object of name → "+E.164" / "sip:..." or {to, ring_timeout_s, caller_id, fallback,
    extension}. A bad entry is left out (a transfer to it is refused `unknown_destination`), a bad
    field of a good entry ignored; every problem goes in one log line; it never raises.
    `behaviours`: what each name's phone does (absent: `silent`)."""
    behaviours = behaviours or {}
    problems: list[str] = []
    try:
        entries = json.loads(raw) if raw.strip() else {}
    except ValueError:
        entries = None
    if not isinstance(entries, dict):
        problems.append("not a JSON object; no named destinations")
        entries = {}
    found: list[Destination] = []
    for name, value in entries.items():
        entry = {"to": value} if isinstance(value, str) else value
        to = entry.get("to") if isinstance(entry, dict) else None
        if not _NAME.fullmatch(name):
            problems.append(f"{name[:64]!r} left out: a name is 1-64 of a-z 0-9 _ -")
            continue
        if not isinstance(to, str) or not (_E164.fullmatch(to) or _SIP.fullmatch(to)):
            problems.append(f"{name!r} left out: 'to' must be an E.164 number (+...) or a sip: URI")
            continue
        assert isinstance(entry, dict)
        found.append(_destination(name, to, entry, behaviours.get(name, "silent"), problems))
    known = {d.name for d in found}
    for d in found:  # `fallback_chain` skips them when dialling
        problems.extend(
            f"{d.name!r}: fallback {n!r} is not a destination; skipped" for n in d.fallback if n not in known
        )
    if problems:
        log.warning("TRANSFER_DESTINATIONS: %s", "; ".join(problems))  # one line, at the start
    return found


def _destination(
    name: str, to: str, entry: dict[str, Any], behaviour: Behaviour, problems: list[str]
) -> Destination:
    """One good entry's fields; a bad field is ignored and noted (scenario.js `parseDestinations`)."""

    def bad(what: str) -> None:
        problems.append(f"{name!r}: {what}; ignored")

    problems.extend(
        f"{name!r}: {f[:40]!r} is not a destination field; ignored" for f in entry if f not in _FIELDS
    )
    ring, caller_id = entry.get("ring_timeout_s"), entry.get("caller_id")
    extension, fallback = entry.get("extension"), entry.get("fallback")
    low, high = _RING_TIMEOUT_S
    seconds = isinstance(ring, int | float) and not isinstance(ring, bool)
    if ring is not None and not (seconds and low <= ring <= high):
        bad("ring_timeout_s is not a number of seconds in [1, 120]")
        ring = None
    if caller_id is not None and not (isinstance(caller_id, str) and _E164.fullmatch(caller_id)):
        bad("caller_id is not an E.164 number")
        caller_id = None
    if extension is not None and not (isinstance(extension, str) and _EXTENSION.fullmatch(extension)):
        bad("extension is not 1-32 of 0-9 * # p w")
        extension = None
    names = isinstance(fallback, list) and all(isinstance(n, str) and _NAME.fullmatch(n) for n in fallback)
    if fallback is not None and not (names and len(fallback) <= _MAX_FALLBACKS):
        bad(f"fallback is not a list of at most {_MAX_FALLBACKS} destination names")
        fallback = None
    return Destination(
        name,
        behaviour,
        fallback=tuple(fallback or ()),
        extension=extension or "",
        to=to,
        caller_id=caller_id,
        ring_timeout_s=float(ring) if ring is not None else None,
    )


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
    send_digits: Callable[[str], None] | None = None  # `Call.sendDigits` on this target's leg
    phase: Phase = "dialling"
    rang: bool = False
    amd: str | None = None  # "human" or "timeout" once detection decided (AMD on)
    extension_played: str | None = None  # the keys played on the target's leg (`w` sent as `p`)
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
        elif event in ("disconnected", "failed") and self.phase in ANSWERED_PHASES:
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
        """A person answered (or AMD is off, or did not finish: taken for one): the extension, if
        any, then the whisper, then the bridge (scenario.js `humanAnswered`)."""
        self.amd = amd
        if amd is not None:
            self._note(f"amd: {amd}")
        if not self.extension:
            await self._start_whisper(tg)
            return
        self.phase = "extension"
        self.extension_played = self.extension.replace("w", "p")  # sendDigits knows p, not w (scenario.js)
        if self.send_digits is not None:
            self.send_digits(self.extension_played)
        self._note(f"extension: {len(self.extension)} symbols")
        done = anyio.current_time() + EXTENSION_S_PER_SYMBOL * len(self.extension)
        tg.start_soon(self._timeout, done, "extension", lambda: self._start_whisper(tg))

    async def _start_whisper(self, tg: Any) -> None:
        settings = self.script.settings
        if not (settings.whisper and self.summary):
            await self._connect("no whisper")
            return
        self.phase = "whispering"
        self.whisper = whisper_text(self.summary)  # said to the target's leg only
        self._note("whisper started")
        now = anyio.current_time()
        tg.start_soon(self._timeout, now + settings.whisper_timeout_s, "whispering", self._whisper_timeout)
        if self.script.whisper_s is not None:  # the leg's PlaybackFinished, by itself
            tg.start_soon(self._timeout, now + self.script.whisper_s, "whispering", self._whisper_done)

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

    async def _whisper_done(self) -> None:
        await self._connect("whisper done")

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
