"""Scripted calls: what the LLM replies, what the caller does, how speech is paced.

One catalogue serves `python -m lab simulate`, the timing regression suite and the benchmarks.
`run_scenario` plays one on a fresh `CallLab` and returns a `CallResult` to measure.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import anyio

from agent import destinations as agent_destinations
from agent import prompt
from agent.app import AgentFactory, ObserverFactory
from agent.call_limits import LimitTimings
from agent.conversation import build_llm_agent
from agent.settings import Settings
from lab.call_lab import CallLab
from lab.faults import FaultPlan
from lab.harness import CloseAfterEndCall, HarnessSimulator
from lab.harness_profile import FAITHFUL, HarnessProfile
from lab.published_example import TRANSFER_DELAY_S, build_published_agent
from lab.results import CallResult
from lab.scripted_llm import LlmReply, ToolCallSpec
from lab.telephony import Destination, Pace, TransferScript
from lab.tts_model import TtsModel
from lab.voxengine_emulator import PlayoutGuard

Policy = Literal["turn-end", "fixed-sleeps"]
Drive = Callable[[HarnessSimulator], Awaitable[None]]

GOODBYE_TEXT = "Thanks for calling, have a great day. Goodbye!"
TRANSFER_BUSY_APOLOGY = "I'm sorry, my colleague's line is busy. Would you like me to take a message?"
VOICEMAIL_APOLOGY = "I'm sorry, I only reached their voicemail. Would you like me to take a message?"
KEYPAD_THANKS = "Thank you, I have your account number."
# The lab's TRANSFER_DESTINATIONS: what each name's phone does (lab.telephony.Destination), and
# the names the agent is configured with (VOX_TRANSFER_DESTINATIONS).
SALES_BUSY = (Destination("sales", "busy", fallback=("support",)), Destination("support", "human"))
SALES_VOICEMAIL = (Destination("sales", "voicemail"),)
PACE = Pace(ring_s=0.3, answer_s=1.0, amd_s=0.8, whisper_s=1.5)


def agent_destinations_for(phones: Sequence[Destination]) -> tuple[agent_destinations.Destination, ...]:
    """The agent's side of a lab TRANSFER_DESTINATIONS: names only, as VOX_TRANSFER_DESTINATIONS."""
    return tuple(agent_destinations.Destination(d.name, f"the {d.name} team") for d in phones)


def transfer_reply(
    lead_in: str = "", summary: str = "Caller asked for a person.", destination: str | None = None
) -> LlmReply:
    arguments = {"summary": summary, **({"destination": destination} if destination else {})}
    return LlmReply(text=lead_in, tool_calls=(ToolCallSpec("call_transfer", arguments),))


def goodbye_reply(text: str = GOODBYE_TEXT) -> LlmReply:
    return LlmReply(text=text, tool_calls=(ToolCallSpec("end_call", {}),))


def silent_hangup_reply() -> LlmReply:
    return LlmReply(tool_calls=(ToolCallSpec("end_call", {}),))


def after_introduction(utterance: str) -> Drive:
    """The caller waits for the introduction to finish, then says `utterance`."""

    async def drive(sim: HarnessSimulator) -> None:
        await sim.wait_agent_turn_end(1, timeout_s=60)
        await sim.user_says(utterance)

    return drive


def until_turn(n: int, then: Drive) -> Drive:
    """`then`, and wait until agent turn `n` has been played."""

    async def drive(sim: HarnessSimulator) -> None:
        await then(sim)
        await sim.wait_agent_turn_end(n, timeout_s=60)

    return drive


def presses_keys(keys: str, then_turn: int) -> Drive:
    """After the introduction, the caller presses `keys` on the keypad (VoxEngine's `dtmf` for
    each), then waits for agent turn `then_turn`."""

    async def drive(sim: HarnessSimulator) -> None:
        await sim.wait_agent_turn_end(1, timeout_s=60)
        for key in keys:
            await sim.send_dtmf(key)
        await sim.wait_agent_turn_end(then_turn, timeout_s=60)

    return drive


def stays_silent() -> Drive:
    """The caller hears the introduction and says nothing more (the call's limits end it)."""

    async def drive(sim: HarnessSimulator) -> None:
        await sim.wait_agent_turn_end(1, timeout_s=60)

    return drive


def until_closed(then: Drive) -> Drive:
    """`then`, and wait until the call's socket closes (VoxEngine detached the agent, say)."""

    async def drive(sim: HarnessSimulator) -> None:
        await then(sim)
        await sim.wait_closed(timeout_s=60)

    return drive


def barge_into_reply(utterance: str, after_s: float, interruption: str) -> Drive:
    """After the introduction, the caller says `utterance`, then talks over the reply."""

    async def drive(sim: HarnessSimulator) -> None:
        await sim.wait_agent_turn_end(1, timeout_s=60)
        await sim.user_says(utterance)
        await sim.barge_in(after_s=after_s, text=interruption, timeout_s=60)

    return drive


def over_the_introduction(utterance: str, after_s: float, stale_idle_s: float) -> Drive:
    """The caller talks over the introduction, whose turn end reaches the agent late."""

    async def drive(sim: HarnessSimulator) -> None:
        await sim.barge_in(after_s=after_s, text=utterance, stale_idle_delay_s=stale_idle_s, timeout_s=60)

    return drive


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    replies: tuple[LlmReply, ...]
    drive: Drive
    tts: TtsModel = field(default_factory=lambda: TtsModel(first_audio_s=0.2, jitter_s=0.1, words_per_s=2.8))
    close_after_end_call: CloseAfterEndCall = "after_speech"
    expected_actions: tuple[str, ...] = ()
    profile: HarnessProfile = FAITHFUL  # how the simulated harness behaves (lab/harness_profile.py)
    transfer: TransferScript | None = None  # what the phone does after an accepted transfer
    destinations: tuple[Destination, ...] | None = None  # TRANSFER_DESTINATIONS and their phones
    pace: Pace | None = None
    agent_settings: Mapping[str, Any] = field(default_factory=dict)  # Settings fields to replace

    def with_tts(self, tts: TtsModel) -> Scenario:
        return replace(self, tts=tts)

    def with_profile(self, profile: HarnessProfile) -> Scenario:
        return replace(self, profile=profile)

    def with_close(self, close: CloseAfterEndCall) -> Scenario:
        return replace(self, close_after_end_call=close)


def pace_for(text: str, seconds: float, *, first_audio_s: float = 0.2, jitter_s: float = 0.1) -> TtsModel:
    """A TTS pace at which `text` takes `seconds` to speak."""
    return TtsModel(first_audio_s=first_audio_s, jitter_s=jitter_s, words_per_s=len(text.split()) / seconds)


def transfer(seconds: float = 4.0, name: str = "transfer") -> Scenario:
    return Scenario(
        name=name,
        description=f"caller asks for a person; a {seconds:g} s confirmation, then the transfer",
        replies=(transfer_reply(),),
        drive=after_introduction("Can I talk to a real person, please?"),
        tts=pace_for(prompt.TRANSFER_CONFIRMATION, seconds),
        expected_actions=("call_transfer",),
    )


def transfer_to(name: str, phones: tuple[Destination, ...], description: str, *replies: LlmReply) -> Scenario:
    """A transfer to the named destination `name` of `phones`, then `replies` (the agent's next turns)."""
    ask = after_introduction("Can I talk to someone in sales, please?")
    return Scenario(
        name="",
        description=description,
        replies=(transfer_reply(summary="Caller wants a quote.", destination=name), *replies),
        drive=until_turn(3, ask) if replies else until_closed(ask),
        tts=pace_for(prompt.TRANSFER_CONFIRMATION, 3.0),
        close_after_end_call="no",
        expected_actions=("call_transfer",),
        destinations=phones,
        pace=PACE,
        agent_settings={"destinations": agent_destinations_for(phones)},
    )


CATALOGUE: dict[str, Callable[[], Scenario]] = {
    "transfer": transfer,
    "transfer-long": lambda: transfer(7.0, "transfer-long"),
    "transfer-short": lambda: transfer(1.0, "transfer-short"),
    "hangup": lambda: Scenario(
        name="hangup",
        description="caller says goodbye; the agent says goodbye and hangs up",
        replies=(goodbye_reply(),),
        drive=after_introduction("That's everything, thank you."),
        expected_actions=("end_call",),
    ),
    "barge-in": lambda: Scenario(
        name="barge-in",
        description="caller talks over the goodbye; the hang-up still happens when that turn ends",
        replies=(goodbye_reply(),),
        drive=barge_into_reply("That's all.", after_s=1.0, interruption="oh, and thanks again"),
        close_after_end_call="no",
        expected_actions=("end_call",),
    ),
    "transfer-busy": lambda: Scenario(
        name="transfer-busy",
        description="the transfer target is busy: the caller is back with the agent, who says so",
        replies=(transfer_reply(), LlmReply(text=TRANSFER_BUSY_APOLOGY)),
        drive=until_turn(3, after_introduction("Can I talk to a real person, please?")),
        tts=pace_for(prompt.TRANSFER_CONFIRMATION, 4.0),
        expected_actions=("call_transfer",),
        transfer=TransferScript.busy(ring_s=0.4, fail_s=2.0),
    ),
    "transfer-answered": lambda: Scenario(
        name="transfer-answered",
        description="the target answers: the summary is whispered to them, then the caller is bridged",
        replies=(transfer_reply(summary="Caller wants a refund for order 1234."),),
        drive=until_closed(after_introduction("Can I talk to a real person, please?")),
        tts=pace_for(prompt.TRANSFER_CONFIRMATION, 4.0),
        close_after_end_call="no",
        expected_actions=("call_transfer",),
        transfer=TransferScript.answers(ring_s=0.4, answer_s=2.0, whisper_s=2.5),
    ),
    "socket-close": lambda: Scenario(
        name="socket-close",
        description="the harness closes the socket as soon as end_call arrives (after VoxEngine hung up)",
        replies=(goodbye_reply(),),
        drive=after_introduction("Bye now."),
        close_after_end_call="immediately",
        expected_actions=("end_call",),
    ),
    "stale-idle": lambda: Scenario(
        name="stale-idle",
        description="caller talks over the introduction, whose turn end arrives after the tool ran",
        replies=(LlmReply(tool_calls=(ToolCallSpec("call_transfer", {}),), first_token_delay_s=0.1),),
        drive=over_the_introduction("I need a human.", after_s=0.8, stale_idle_s=0.8),
        expected_actions=("call_transfer",),
    ),
    "transfer-fallback": lambda: replace(
        transfer_to(
            "sales",
            SALES_BUSY,
            "sales is busy: VoxEngine says attempt_failed and dials its fallback, support, who answers "
            "(AMD: human), hears the whisper and is bridged",
        ),
        name="transfer-fallback",
    ),
    "transfer-voicemail": lambda: replace(
        transfer_to(
            "sales",
            SALES_VOICEMAIL,
            "sales answers with a voicemail (AMD: machine): failed voicemail, the caller is never put "
            "through to it and the agent says so",
            LlmReply(text=VOICEMAIL_APOLOGY),
        ),
        name="transfer-voicemail",
    ),
    "keypad": lambda: Scenario(
        name="keypad",
        description="the caller types 1234# on the keypad: one entry reaches the LLM, which answers; "
        "no digit in the logs or spans",
        replies=(LlmReply(text=KEYPAD_THANKS, when_user_says="1234#"),),
        drive=presses_keys("1234#", 2),
    ),
    "silence-hangup": lambda: Scenario(
        name="silence-hangup",
        description="the caller says nothing: a check-in after 2 s of silence, a goodbye after 5 s, "
        "the hang-up released when the goodbye's turn ends",
        replies=(),
        drive=stays_silent(),
        tts=TtsModel(first_audio_s=0.2, jitter_s=0.1, words_per_s=5.0),
        expected_actions=("end_call",),
        agent_settings={"limits": LimitTimings(silence_prompt_s=2.0, silence_hangup_s=5.0)},
    ),
    "max-call": lambda: Scenario(
        name="max-call",
        description="a 10 s call limit: a polite close 3 s before it, the hang-up released when that "
        "goodbye's turn ends",
        replies=(),
        drive=stays_silent(),
        tts=TtsModel(first_audio_s=0.2, jitter_s=0.1, words_per_s=5.0),
        expected_actions=("end_call",),
        agent_settings={"limits": LimitTimings(max_call_s=10.0, close_margin_s=3.0)},
    ),
    "silent-tool": lambda: Scenario(
        name="silent-tool",
        description="the LLM hangs up without a word: released by the no-speech deadline",
        replies=(silent_hangup_reply(),),
        drive=after_introduction("Goodbye."),
        close_after_end_call="no",
        expected_actions=("end_call",),
    ),
}

DEFAULT_SCENARIOS = ("transfer", "hangup")


async def run_scenario(
    scenario: Scenario,
    *,
    policy: Policy = "turn-end",
    faults: FaultPlan | None = None,
    settings: Settings | None = None,
    observers: Sequence[ObserverFactory] = (),
    secret: str | None = None,
    settle_s: float = 0.0,
    agent_factory: AgentFactory | None = None,
    playout_lag_s: float = 0.0,
    guard: PlayoutGuard | None = None,
) -> CallResult:
    """Play `scenario` once on a fresh lab and collect what happened.

    The call ends when the harness closes it (after `end_call`) or, for a transfer, once the
    action reached its outcome (`settle_s` later, to catch anything fired after it); the lab then
    drains and stops, so everything recorded is final. `agent_factory` plays your own agent
    (default: ours, or the published one for `policy="fixed-sleeps"`); `playout_lag_s` and
    `guard` set VoxEngine's media buffer and playout guard (lab/voxengine_emulator.py).
    """
    factory = agent_factory or (build_llm_agent if policy == "turn-end" else build_published_agent)
    if scenario.agent_settings:
        settings = dataclasses.replace(settings or Settings(), **scenario.agent_settings)
    async with CallLab(
        scenario.replies,
        transfer=scenario.transfer,
        destinations=scenario.destinations,
        pace=scenario.pace,
        faults=faults,
        settings=settings,
        observers=observers,
        agent_factory=factory,
        secret=secret,
        playout_lag_s=playout_lag_s,
        guard=guard,
    ) as lab:
        async with lab.call(
            tts=scenario.tts,
            profile=scenario.profile,
            close_after_end_call=scenario.close_after_end_call,
            call_id=scenario.name,
        ) as sim:
            await scenario.drive(sim)
            await _settle(lab, sim, scenario, policy, settle_s)
        await lab.wait_calls_ended(1, timeout_s=60)
    return CallResult.collect(scenario.name, policy, sim.timeline, lab)


async def _settle(
    lab: CallLab, sim: HarnessSimulator, scenario: Scenario, policy: Policy, settle_s: float
) -> None:
    wanted = len(scenario.expected_actions)
    # Bounded waits: a policy that loses an action must show it, not hang the run.
    with anyio.move_on_after(30):
        if policy == "turn-end":
            await lab.wait_outcomes(wanted)
        else:  # the published policy reports nothing: wait for its POSTs or its sleeps to run out
            with contextlib.suppress(TimeoutError):
                await lab.emulator.wait_for_requests(wanted, timeout=TRANSFER_DELAY_S + 5)
        await sim.wait_until_idle(timeout_s=30)
        if "end_call" in scenario.expected_actions:  # the chain: VoxEngine hangs up, then the agent
            await sim.wait_closed(timeout_s=30)
    if settle_s:
        await anyio.sleep(settle_s)
