"""The offline call lab: the real app, a scripted LLM, a VoxEngine emulator and a simulated
harness, all on loopback in one event loop and on one clock (`time.perf_counter`).

    async with CallLab(replies=[LlmReply(tool_calls=(ToolCallSpec("call_transfer", {}),))]) as lab:
        async with lab.call(tts=TtsModel(words_per_s=3)) as sim:
            await sim.wait_agent_turn_end(1)          # the introduction
            await sim.user_says("Can I talk to a person?")
            await lab.emulator.wait_for_effects(1, timeout=10)
        await lab.wait_calls_ended(1)
        print(lab.report())
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio

from agent.action_events import ActionEvent, Finished, details, step_name
from agent.actions import ControlAction
from agent.app import AgentFactory, ObserverFactory, TelephonyAgentApp
from agent.call_observer import CallInfo, CallObserver
from agent.control_transport import ControlNetwork, Pin
from agent.conversation import build_llm_agent
from agent.settings import Settings
from lab.asgi_server import serve_on_loopback, server_port
from lab.faults import FaultPlan
from lab.harness import CloseAfterEndCall, HarnessSimulator
from lab.harness_profile import FAITHFUL, HarnessProfile
from lab.scripted_llm import LlmReply, ScriptedLlm
from lab.telephony import Destination, Pace, TransferScript
from lab.timeline import Timeline, TimelineEvent
from lab.tts_model import TtsModel
from lab.voxengine_emulator import NORMAL_CLOSE, AgentLink, CloseHandling, PlayoutGuard, VoxEngineEmulator


@dataclass(frozen=True)
class ActionRecord:
    """One step of one control action, as the app reported it."""

    at: float
    call_id: str
    action_id: str
    action: str
    event: ActionEvent

    @property
    def name(self) -> str:
        """The step's word (agent/action_events.py): "enqueued", "delivered", "telephony.failed", ..."""
        return step_name(self.event)

    @property
    def attrs(self) -> dict[str, object]:
        return details(self.event)


@dataclass
class CallRecorder:
    """Collects what the app reports about every call in the lab."""

    actions: list[ActionRecord] = field(default_factory=list)
    calls: dict[str, CallInfo] = field(default_factory=dict)
    ended: list[tuple[str, float]] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def factory(self, call: CallInfo) -> CallObserver:
        self.calls[call.call_id] = call
        return _RecordingObserver(self, call)

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def outcomes(self, call_id: str | None = None) -> list[ActionRecord]:
        return [r for r in self.actions if isinstance(r.event, Finished) and call_id in (None, r.call_id)]

    def first(self, name: str, action: str | None = None) -> ActionRecord | None:
        return next((r for r in self.actions if r.name == name and action in (None, r.action)), None)


class _RecordingObserver(CallObserver):
    def __init__(self, recorder: CallRecorder, call: CallInfo) -> None:
        self._recorder = recorder
        self._call = call

    def action_event(self, action: ControlAction, event: ActionEvent, at: float) -> None:
        record = ActionRecord(at, self._call.call_id, action.id, action.kind.name, event)
        self._recorder.actions.append(record)
        self._recorder.notify()

    def call_ended(self, at: float) -> None:
        self._recorder.ended.append((self._call.call_id, at))
        self._recorder.notify()


def lab_settings(network: ControlNetwork, base: Settings | None = None, **overrides: Any) -> Settings:
    """Settings for calls in the lab: the scripted LLM's model, and control hosts reached by name
    through `network` (e.g. `VoxEngineEmulator.network`: a pin and the lab CA); every other
    check as in production."""
    return dataclasses.replace(
        base or Settings(), control=network, llm_model="openai/scripted", llm_api_key="sk-lab", **overrides
    )


def _harness_to_voxengine(emulator: VoxEngineEmulator, session: str, event: TimelineEvent) -> None:
    """What VoxEngine gets of the simulated harness: the agent's audio as the harness plays it
    (its media buffer) and Cartesia closing its socket. Assumption: when the harness closes the
    call after Line's `end_call`, or the app closed its socket, Cartesia closes VoxEngine's with
    1000 (web-calls.mdx: "When the agent ends the call ... Code: 1000"); a close by VoxEngine
    itself (`by="voxengine"`) or by the caller's side is no news to the scenario. A `dtmf` frame
    from the app is Cartesia's `AgentsEvents.DTMF` at VoxEngine (issue #18)."""
    detail = event.detail
    if event.kind == "agent_turn_started":
        emulator.agent_audio(session, started_at=detail["scheduled_at"])
    elif event.kind == "agent_playback_resumed":
        emulator.agent_audio(session, started_at=detail["audio_start"])
    elif event.kind == "agent_playback_ended":
        emulator.agent_audio(session, stopped_at=detail["audio_end"])
    elif event.kind == "agent_playback_stopped":
        emulator.agent_audio(session, stopped_at=event.at)
    elif event.kind == "agent_dtmf":
        emulator.agent_dtmf(str(detail.get("button", "")), session)
    elif event.kind == "socket_closed" and detail.get("by") in ("end_call", "app"):
        emulator.agent_closed(session, NORMAL_CLOSE)


class CallLab:
    """Serves the real `TelephonyAgentApp` against a scripted LLM and a VoxEngine emulator."""

    def __init__(
        self,
        replies: Sequence[LlmReply] = (),
        *,
        faults: FaultPlan | None = None,
        secret: str | None = None,
        settings: Settings | None = None,
        observers: Sequence[ObserverFactory] = (),
        agent_factory: AgentFactory = build_llm_agent,
        default_reply: LlmReply | None = None,
        pins: Sequence[Pin] = (),  # other lab hosts the app may reach by name, besides the emulator
        allow_local: bool = True,  # False: production's setting (pins ignored, loopback refused)
        transfer: TransferScript | None = None,  # what the phone does after an accepted transfer
        playout_lag_s: float = 0.0,  # VoxEngine's playout behind the harness's (lab/media_buffer.py)
        guard: PlayoutGuard | None = None,  # the scenario's hang-up playout guard (default on, 3 s)
        close_handling: CloseHandling = "keep_caller",  # "end_at_once": the scenario before #17
        destinations: Sequence[Destination] | None = None,  # TRANSFER_DESTINATIONS and their phones
        pace: Pace | None = None,  # when those phones ring, answer, are judged by AMD
    ) -> None:
        self.recorder = CallRecorder()
        self.llm = ScriptedLlm(replies, default=default_reply)
        self.emulator = VoxEngineEmulator(
            faults=faults,
            secret=secret,
            transfer=transfer,
            playout_lag_s=playout_lag_s,
            guard=guard,
            close_handling=close_handling,
            destinations=destinations,
            pace=pace,
        )
        self._secret = secret
        self._settings = settings
        self._observers = list(observers)
        self._agent_factory = agent_factory
        self._pins = tuple(pins)
        self._allow_local = allow_local
        self._stack = contextlib.AsyncExitStack()
        self.app: TelephonyAgentApp | None = None
        self.ws_url = ""

    async def __aenter__(self) -> CallLab:
        await self._stack.__aenter__()
        try:
            await self._stack.enter_async_context(self.emulator)
            await self._stack.enter_async_context(self.llm)
            network = self.emulator.network
            settings = lab_settings(
                dataclasses.replace(
                    network, resolve=(*network.resolve, *self._pins), allow_local=self._allow_local
                ),
                self._settings,
                llm_api_base=self.llm.api_base,
                control_secret=self._secret,
            )
            self.app = TelephonyAgentApp(
                settings,
                observers=[self.recorder.factory, *self._observers],
                agent_factory=self._agent_factory,
                clock=time.perf_counter,
            )
            server = await self._stack.enter_async_context(
                serve_on_loopback(self.app.fastapi_app, graceful_shutdown_s=settings.drain_timeout_s + 1)
            )
            self.ws_url = f"ws://127.0.0.1:{server_port(server)}/ws"
        except BaseException:
            await self._stack.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.__aexit__(None, None, None)

    @contextlib.asynccontextmanager
    async def call(
        self,
        *,
        tts: TtsModel | None = None,
        profile: HarnessProfile = FAITHFUL,
        close_after_end_call: CloseAfterEndCall = "after_speech",
        session: str = "s1",
        call_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        timeline: Timeline | None = None,
        event_ids: bool = True,  # False: a harness that sends no `event_id` (the SDK's option)
    ) -> AsyncIterator[HarnessSimulator]:
        """One simulated call; `metadata` replaces the default (what voxengine/scenario.js sends)."""
        meta = dict(metadata) if metadata is not None else self.emulator.start_metadata(session)
        async with HarnessSimulator.connect(
            self.ws_url,
            metadata=meta,
            tts=tts,
            profile=profile,
            close_after_end_call=close_after_end_call,
            timeline=timeline,
            call_id=call_id or f"lab-{session}",
            event_ids=event_ids,
        ) as sim:
            # The emulated scenario reaches this call's agent as VoxEngine reaches it through
            # Cartesia: custom events, and closing the client (the harness then ends the call).
            link = AgentLink(
                custom=sim.send_custom, close=partial(sim.close, by="voxengine"), dtmf=sim.send_dtmf
            )
            self.emulator.link_agent(session, link)
            sim.timeline.listen(partial(_harness_to_voxengine, self.emulator, session))
            try:
                yield sim
            finally:
                self.emulator.agent_gone(session)

    async def wait_outcomes(self, n: int, *, timeout_s: float = 30.0) -> list[ActionRecord]:
        """Wait until `n` actions reached their outcome (accepted, failed or cancelled)."""
        with anyio.fail_after(timeout_s):
            while len(self.recorder.outcomes()) < n:
                await self.recorder.changed.wait()
        return self.recorder.outcomes()

    async def wait_calls_ended(self, n: int, *, timeout_s: float = 20.0) -> None:
        """Wait until `n` calls have ended and drained their control plane."""
        with anyio.fail_after(timeout_s):
            while len(self.recorder.ended) < n:
                await self.recorder.changed.wait()
