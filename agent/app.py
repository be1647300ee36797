"""The ASGI app: Line's `VoiceAgentApp` plus a scope per call that owns its control plane.

Each websocket (one call) runs inside an anyio task group. The call's `CallControl.run` lives
there, outside the agent's cancellable turn task, and is drained (bounded) when the call ends,
so no task outlives its call. The process keeps one pooled HTTP client, opened and closed by
the ASGI lifespan. In front of Line's routes, `agent.gate` admits calls (`AGENT_MAX_CALLS`, the
drain, `AGENT_PATH_SECRET`). The first SIGTERM drains (`agent.drain`): new calls are refused, live
ones go on until they end (at most `AGENT_DRAIN_TIMEOUT_S`); then uvicorn closes the calls still
open, each releases what it holds and drains, and only then does the lifespan close the client.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup
from fastapi import FastAPI, WebSocket
from line.agent import AgentEnv, AgentSpec, TurnEnv
from line.events import (
    CallEnded,
    CallStarted,
    InputEvent,
    OutputEvent,
    UserDtmfSent,
    UserTurnEnded,
    UserTurnStarted,
)
from line.voice_agent_app import CallRequest, VoiceAgentApp
from loguru import logger

from agent import keypad
from agent.actions import END_CALL, ActionOutcome
from agent.admission import Admission
from agent.call_control import CallControl
from agent.call_limits import KINDS as LIMIT_KINDS
from agent.call_limits import CallLimits
from agent.call_log import CartesiaCallLog, FrameSender, send_beside_line
from agent.call_observer import CallInfo, CallObserver, ObserverGroup
from agent.call_parties import call_parties
from agent.call_recording import CallRecording, RecordingWebSocket, write_recording
from agent.control_transport import make_control_client
from agent.control_url import ControlTarget, InvalidControlUrl, parse_control_url
from agent.conversation import build_llm_agent
from agent.drain import drain_on_signals
from agent.gate import WS, Gate
from agent.keypad import Keypad
from agent.line_wire import EndCallOutput
from agent.local_input import LocalInput
from agent.log_redaction import install_log_redaction
from agent.runtime import GcPolicy, describe_runtime
from agent.settings import Settings
from agent.voxengine_client import VoxEngineClient

CONTROL_URL_KEY = "vox_session_control_url"

ObserverFactory = Callable[[CallInfo], CallObserver]
AgentFactory = Callable[[Settings, CallControl], Any]
ShutdownHook = Callable[[], None]  # blocking work after calls drained, e.g. flush spans


@dataclass
class _CallScope:
    task_group: TaskGroup
    websocket: LocalInput
    frames: FrameSender
    control: CallControl | None = None
    observer: CallObserver | None = None


# How `_get_agent` (called inside Line's endpoint) finds its call. A weak reference: every task
# and timer started during the call copies this context, and some outlive the call by far (a
# cancelled timer stays scheduled until its deadline; an aiohttp connector inside LiteLLM's
# client cache re-arms its cleanup timer in the context that created it, for the life of the
# cache). A strong reference would keep the ended call's websocket and task group alive with them.
_current_call: contextvars.ContextVar[weakref.ref[_CallScope]] = contextvars.ContextVar("current_call")


class _ObservedAgent:
    """Reports the agent's outputs (tool calls, speech sent) to the call's observer."""

    def __init__(self, inner: Any, observer: CallObserver, clock: Callable[[], float]) -> None:
        self._inner = inner
        self._observer = observer
        self._clock = clock

    async def process(self, env: TurnEnv, event: InputEvent) -> AsyncIterator[OutputEvent]:
        async for output in self._inner.process(env, event):
            self._observer.agent_output(output, self._clock())
            yield output


class _CallTurns:
    """Each turn to whoever says it: a limit's check-in or goodbye to `CallLimits`, anything else
    to the agent, with the caller's keypad entries in its history (`Keypad.rewrite`)."""

    def __init__(self, inner: Any, local: LocalInput, pad: Keypad, limits: CallLimits) -> None:
        self._inner = inner
        self._local = local
        self._keypad = pad
        self._limits = limits

    async def process(self, env: TurnEnv, event: InputEvent) -> AsyncIterator[OutputEvent]:
        kind = self._local.kind_of(event)
        if kind in LIMIT_KINDS:
            async for output in self._limits.turn(kind):
                yield output
            return
        ends_entry = kind == keypad.KIND or isinstance(event, UserDtmfSent)
        async for output in self._inner.process(env, self._keypad.rewrite(event, ends_entry=ends_entry)):
            yield output


async def _end_own_side(websocket: Any, outcome: ActionOutcome) -> None:
    """End the agent's side of the call with Line's `end_call` frame (Cartesia then closes
    VoxEngine's socket): once VoxEngine hung up the caller, or when the hang-up finally failed, so
    the call cannot linger (agent/call_control.py `EndOwnSide`)."""
    if outcome.action.kind != END_CALL:
        return
    failed = outcome.status == "failed"
    if failed:
        logger.warning(f"hang-up not delivered ({outcome.reason}); ending the agent's side of the call")
    else:
        logger.info("VoxEngine hung up the caller; ending the agent's side of the call")
    sent = await send_beside_line(websocket, EndCallOutput(reason="agent_ended").model_dump())
    if sent and failed:  # otherwise Cartesia closes it on end_call (web-calls.mdx), as VoxEngine does
        with contextlib.suppress(Exception):  # the harness may have closed already
            await websocket.close()


def _runs_agent(event: InputEvent) -> bool:
    # Line's default run filter: turn events are observed, never used to (re)start the agent,
    # because starting it cancels the reply in flight. (Custom events start it only when the
    # control plane says so: a failed transfer.)
    return isinstance(event, (CallStarted, UserTurnEnded, CallEnded))


def _cancels_agent(event: InputEvent) -> bool:
    return isinstance(event, UserTurnStarted)


class TelephonyAgentApp(VoiceAgentApp):  # type: ignore[misc]  # line ships no type stubs
    """`VoiceAgentApp` whose calls each own a VoxEngine control plane."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        observers: Sequence[ObserverFactory] = (),
        agent_factory: AgentFactory = build_llm_agent,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.perf_counter,
        shutdown_hooks: Sequence[ShutdownHook] = (),
        gc_policy: GcPolicy | None = None,  # applied when the lifespan starts (a server process)
    ) -> None:
        self.settings = settings or Settings.from_env()
        secret = self.settings.path_secret
        # Before the first call: Line logs the start message, control URL, agent_token and all.
        install_log_redaction(secrets=[secret] if secret else [])
        super().__init__(get_agent=self._get_agent)
        self.admission = Admission(self.settings.max_calls)
        self.fastapi_app.add_middleware(Gate, admission=self.admission, path_secret=secret)
        if secret:
            self.ws_route = f"/{secret}{WS}"  # what `/chats` answers; the gate maps it to Line's `/ws`
        self._observer_factories = list(observers)
        self._agent_factory = agent_factory
        self._injected_http = http_client
        self._shutdown_hooks = list(shutdown_hooks)
        self._gc_policy = gc_policy
        self._client: VoxEngineClient | None = None
        self.live_calls: set[CallControl] = set()
        self.clock = clock  # one clock for every timestamp a call reports
        self.fastapi_app.router.lifespan_context = self._lifespan

    def add_observer(self, factory: ObserverFactory) -> None:
        self._observer_factories.append(factory)

    def add_shutdown_hook(self, hook: ShutdownHook) -> None:
        self._shutdown_hooks.append(hook)

    @asynccontextmanager
    async def _lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        for warning in self.settings.warnings:
            logger.warning(warning)
        if self._gc_policy is not None:
            self._gc_policy.apply()  # start-up is over: what it built is frozen (agent/runtime.py)
            logger.info(f"serving: {describe_runtime()}")
        http = self._injected_http or make_control_client(self.settings.control)
        self._client = VoxEngineClient(http, retry=self.settings.retry, secret=self.settings.control_secret)
        try:
            async with drain_on_signals(self.admission, self.settings.call_drain_timeout_s):
                yield
        finally:
            # Calls still open here (the server did not close them) release and drain now.
            for control in list(self.live_calls):
                control.close()
            with anyio.move_on_after(self.settings.drain_timeout_s):
                for control in list(self.live_calls):
                    await control.wait_finished()
            self._client = None
            if self._injected_http is None:
                await http.aclose()
            for shutdown in self._shutdown_hooks:
                try:
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(shutdown)
                except Exception:
                    logger.exception("shutdown hook failed")

    async def websocket_endpoint(self, websocket: WebSocket) -> None:
        record_dir = self.settings.record_dir
        recording = CallRecording(self.clock) if record_dir is not None else None
        socket: Any = RecordingWebSocket(websocket, recording) if recording is not None else websocket
        async with anyio.create_task_group() as tg:
            local = LocalInput(socket, tg)  # Line reads the harness through it (agent/local_input.py)
            scope = _CallScope(tg, local, FrameSender())
            tg.start_soon(scope.frames.run, local)
            token = _current_call.set(weakref.ref(scope))
            try:
                await super().websocket_endpoint(local)
            finally:
                _current_call.reset(token)
                if scope.control is not None:
                    await self._drain(scope.control)
                scope.frames.close()
                tg.cancel_scope.cancel()
            if scope.observer is not None:
                scope.observer.call_ended(self.clock())
        if recording is not None and record_dir is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(write_recording, recording, record_dir)

    async def _drain(self, control: CallControl) -> None:
        control.close()
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.settings.drain_timeout_s):
            await control.wait_finished()
        self.live_calls.discard(control)

    async def _get_agent(self, env: AgentEnv, call: CallRequest) -> AgentSpec:
        call_ref = _current_call.get(None)
        scope = call_ref() if call_ref is not None else None
        if scope is None:
            raise RuntimeError("TelephonyAgentApp._get_agent runs only inside its websocket endpoint")
        if self._client is None:
            raise RuntimeError("the app's lifespan has not started (serve it with lifespan enabled)")
        metadata = call.metadata if isinstance(call.metadata, dict) else {}
        target, refusal = self._control_target(metadata.get(CONTROL_URL_KEY), call.call_id)
        caller, callee = call_parties(call)
        info = CallInfo(
            call_id=call.call_id,
            agent_call_id=call.agent_call_id,
            caller=caller,
            callee=callee,
            control_host=target.host if target else None,
            control_fingerprint=target.fingerprint if target else None,
            control_refusal=refusal,
            control_origin=target.origin if target else None,
        )
        call_log = CartesiaCallLog(scope.frames)  # milestones in Cartesia's call view
        observer = ObserverGroup([call_log, *(factory(info) for factory in self._observer_factories)])
        control = CallControl(
            target=target,
            refusal=refusal,
            client=self._client,
            timings=self.settings.timings,
            observer=observer,
            clock=self.clock,
            end_own_side=lambda outcome: _end_own_side(scope.websocket, outcome),
        )
        observer.call_started(info, self.clock())
        local = scope.websocket
        pad = Keypad(local.inject, self.clock)
        limits = CallLimits(self.settings.limits, control, local.inject, self.clock)
        agent = _CallTurns(self._agent_factory(self.settings, control), local, pad, limits)
        scope.control, scope.observer = control, observer
        self.live_calls.add(control)
        scope.task_group.start_soon(control.run)
        scope.task_group.start_soon(pad.run)
        scope.task_group.start_soon(limits.run)

        def run_filter(event: InputEvent) -> bool:
            kind = local.kind_of(event)
            if kind is not None:  # a turn the call started itself (a limit, a keypad pause)
                return kind != keypad.KIND or pad.pending
            limits.observe(event)
            entry_ended = pad.observe(event)  # the caller's `#`
            resumes = control.observe(event)  # a failed transfer: the caller must hear about it
            return _runs_agent(event) or resumes or entry_ended

        return (_ObservedAgent(agent, observer, self.clock), run_filter, _cancels_agent)

    def _control_target(self, raw: object, call_id: str) -> tuple[ControlTarget | None, str | None]:
        try:
            network = self.settings.control
            target = parse_control_url(
                raw, allowed_hosts=network.allowed_hosts, allow_local=network.allow_local
            )
        except InvalidControlUrl as exc:
            # The call goes on without telephony actions; the tools tell the caller so.
            logger.warning(f"call {call_id}: control URL refused ({exc.reason}); telephony tools disabled")
            return None, exc.reason
        logger.info(f"call {call_id}: control URL {target}")
        return target, None
