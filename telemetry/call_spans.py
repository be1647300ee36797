"""The call's trace: a `CallObserver` that turns one call's hooks into spans.

One trace per call (docs/tracing.md has the full table):

    call                                  root, from call_started to call_ended
    ├── agent.turn                        AgentTurnStarted → AgentTurnEnded (speech played)
    ├── user.turn                         UserTurnStarted → UserTurnEnded
    ├── execute_tool {name}               AgentToolCalled → AgentToolReturned
    └── control {kind}                    enqueued → accepted / failed / cancelled / session_ended
        │                                 (a transfer: accepted → telephony.ringing →
        │                                  telephony.connected / telephony.failed)
        └── POST                          one per attempt (httpx instrumentation)

The action span carries an event per step (enqueued, armed, released, sent, answered, retry,
accepted/failed/cancelled/session_ended, and for an action whose outcome VoxEngine reports later,
telephony.ringing/connected/failed) and a link to the agent turn whose end released it; the tool
span that requested it links to it. A transfer's span stays open after its acceptance until
VoxEngine says how it ended on the phone, or the call ends. Every hook runs on the event loop,
quickly, and never raises (`ObserverGroup` contains it anyway).

Timestamps: the hooks give `time.perf_counter()` seconds; each is placed on the epoch at
`wall_at_start + (at - perf_at_start)`, one offset sampled when the observer is created (as the
call starts), so these spans and the HTTP spans (timed by the SDK on the wall clock) share one
time axis.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from line.events import (
    AgentEndCall,
    AgentTextSent,
    AgentToolCalled,
    AgentToolReturned,
    AgentTurnEnded,
    AgentTurnStarted,
    CallEnded,
    InputEvent,
    OutputEvent,
    UserTextSent,
    UserTurnEnded,
    UserTurnStarted,
)
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

from agent.actions import ControlAction
from agent.call_observer import CallInfo, CallObserver
from telemetry import conventions as c
from telemetry.http_client import DeliveryProgress, instrument_http_client, with_delivery_progress
from telemetry.redaction import mask_party

# Keys of `action_event` attrs (agent/call_control.py, agent/voxengine_client.py) → span event keys.
_EVENT_KEYS = {
    "action": c.ACTION_KIND,
    "turn": c.TURN_SEQ,
    "reason": c.EVENT_REASON,
    "attempt": c.EVENT_ATTEMPT,
    "attempts": c.ACTION_ATTEMPTS,
    "wait_s": c.EVENT_RETRY_WAIT_S,
    "status": c.HTTP_RESPONSE_STATUS_CODE,
}
_TELEPHONY_ENDS = ("telephony.connected", "telephony.failed")
_OUTCOMES = {
    "accepted": "delivered",
    "failed": "failed",
    "cancelled": "cancelled",
    "session_ended": "session_ended",
}


class EpochClock:
    """Hook timestamps (seconds on `clock`) → epoch nanoseconds, on one offset."""

    def __init__(
        self, clock: Callable[[], float] = time.perf_counter, wall_clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self._wall_ns = wall_clock_ns()
        self._at = clock()

    def ns(self, at: float) -> int:
        return self._wall_ns + round((at - self._at) * 1e9)


@dataclass
class _Turn:
    span: Span
    seq: int
    characters: int = 0
    interrupted: bool = False


@dataclass
class _Action:
    span: Span
    kind: str
    progress: DeliveryProgress = field(default_factory=DeliveryProgress)
    carrier: int | None = None
    requested_by_tool: bool = False
    on_the_phone: bool = False  # accepted; VoxEngine's outcome events still to come
    phone_result: tuple[str, Mapping[str, Any]] | None = None  # came before the POST's answer


@dataclass(frozen=True)
class _ToolCall:
    name: str
    args_size: int
    at: float


class TracingObserver(CallObserver):
    """Records one call as one trace."""

    def __init__(self, call: CallInfo, tracer: Tracer, *, clock: EpochClock | None = None) -> None:
        self._call = call
        self._tracer = tracer
        self._clock = clock or EpochClock()
        self._root: Span | None = None
        self._root_context = Context()
        self._ended = False
        self._agent_turn: _Turn | None = None
        self._agent_turns: dict[int, SpanContext] = {}
        self._user_turn: _Turn | None = None
        self._user_turns = 0
        self._tools: dict[str, _ToolCall] = {}
        self._actions: dict[str, _Action] = {}
        self._action_count = 0

    # ---- the call ----

    def call_started(self, call: CallInfo, at: float) -> None:
        if self._root is not None:
            return
        self._call = call
        attributes = _attributes(
            {
                c.CALL_ID: call.call_id,
                c.CALL_AGENT_CALL_ID: call.agent_call_id,
                c.CALL_CALLER: mask_party(call.caller),
                c.CALL_CALLEE: mask_party(call.callee),
                c.CONTROL_HOST: call.control_host,
                c.CONTROL_FINGERPRINT: call.control_fingerprint,
                c.CONTROL_REFUSAL: call.control_refusal,
            }
        )
        # A new trace, whatever context the hook runs in: one trace per call.
        self._root = self._tracer.start_span(
            c.CALL_SPAN,
            context=Context(),
            kind=SpanKind.SERVER,
            attributes=attributes,
            start_time=self._ns(at),
        )
        self._root_context = trace.set_span_in_context(self._root, Context())

    def call_ended(self, at: float) -> None:
        root = self._root
        if root is None or self._ended:
            return
        end = self._ns(at)
        self._end_agent_turn(end, "call_ended")
        self._end_user_turn(end, "call_ended")
        for call_id, tool in list(self._tools.items()):
            self._tool_span(call_id, tool, end_at=at, result=None)
        for state in self._actions.values():
            if state.on_the_phone:  # accepted; the call ended before VoxEngine said how it went
                state.span.add_event("call_ended", timestamp=end)
            else:  # only if the drain bound cut delivery short
                state.span.add_event("abandoned", timestamp=end)
                state.span.set_status(Status(StatusCode.ERROR, "call_ended"))
            state.span.end(end_time=end)
        self._actions.clear()
        root.set_attributes(
            {
                c.CALL_AGENT_TURNS: len(self._agent_turns),
                c.CALL_USER_TURNS: self._user_turns,
                c.CALL_ACTIONS: self._action_count,
            }
        )
        root.end(end_time=end)
        self._ended = True

    # ---- the harness: turns ----

    def harness_event(self, event: InputEvent, at: float) -> None:
        if self._root is None or self._ended:
            return
        ns = self._ns(at)
        if isinstance(event, AgentTurnStarted):
            self._end_agent_turn(ns, "next_turn")  # the flush policy does the same
            seq = len(self._agent_turns) + 1
            span = self._child(c.AGENT_TURN_SPAN, ns, {c.TURN_SEQ: seq})
            self._agent_turn = _Turn(span, seq)
            self._agent_turns[seq] = span.get_span_context()
        elif isinstance(event, AgentTextSent):
            if self._agent_turn is not None:
                self._agent_turn.characters += len(event.content)
        elif isinstance(event, AgentTurnEnded):
            if self._agent_turn is not None:
                spoken = [item.content for item in event.content if isinstance(item, AgentTextSent)]
                if spoken:  # the harness's own account of the turn wins over the running count
                    self._agent_turn.characters = sum(map(len, spoken))
                self._end_agent_turn(ns, "idle")
        elif isinstance(event, UserTurnStarted):
            self._end_user_turn(ns, "next_turn")
            barge_in = self._agent_turn is not None
            if self._agent_turn is not None and not self._agent_turn.interrupted:
                self._agent_turn.interrupted = True
                self._agent_turn.span.add_event("interrupted", timestamp=ns)
            self._user_turns += 1
            span = self._child(
                c.USER_TURN_SPAN, ns, {c.TURN_SEQ: self._user_turns, c.TURN_BARGE_IN: barge_in}
            )
            self._user_turn = _Turn(span, self._user_turns)
        elif isinstance(event, UserTextSent):
            if self._user_turn is not None:
                self._user_turn.characters += len(event.content)
        elif isinstance(event, UserTurnEnded):
            if self._user_turn is not None:
                heard = [item.content for item in event.content if isinstance(item, UserTextSent)]
                if heard:
                    self._user_turn.characters = sum(map(len, heard))
                self._end_user_turn(ns, "idle")
        elif isinstance(event, CallEnded):
            self._root.add_event("harness.call_ended", timestamp=ns)

    def _end_agent_turn(self, end_ns: int, how: str) -> None:
        turn, self._agent_turn = self._agent_turn, None
        if turn is not None:
            turn.span.set_attributes(
                {c.TURN_CHARACTERS: turn.characters, c.TURN_INTERRUPTED: turn.interrupted, c.TURN_END: how}
            )
            turn.span.end(end_time=end_ns)

    def _end_user_turn(self, end_ns: int, how: str) -> None:
        turn, self._user_turn = self._user_turn, None
        if turn is not None:
            turn.span.set_attributes({c.TURN_CHARACTERS: turn.characters, c.TURN_END: how})
            turn.span.end(end_time=end_ns)

    # ---- the agent: tool calls ----

    def agent_output(self, event: OutputEvent, at: float) -> None:
        if self._root is None or self._ended:
            return
        if isinstance(event, AgentToolCalled):
            self._tools[event.tool_call_id] = _ToolCall(event.tool_name, _json_size(event.tool_args), at)
        elif isinstance(event, AgentToolReturned):
            called = self._tools.get(event.tool_call_id)
            if called is None:  # a return without its call: a zero-length span at the return
                called = _ToolCall(event.tool_name, _json_size(event.tool_args), at)
            self._tool_span(event.tool_call_id, called, end_at=at, result=event.result)
        elif isinstance(event, AgentEndCall):
            self._root.add_event("agent.end_call", timestamp=self._ns(at))

    def _tool_span(self, call_id: str, tool: _ToolCall, *, end_at: float, result: object) -> None:
        """Line reports AgentToolCalled and AgentToolReturned together, after the tool ran (and
        after what the tool said), so the span marks when the call was reported, not its run."""
        self._tools.pop(call_id, None)
        name = tool.name
        links = []
        for state in self._actions.values():  # the action this tool asked for, if any
            if state.kind == name and not state.requested_by_tool:
                state.requested_by_tool = True
                links.append(Link(state.span.get_span_context(), {c.LINK_TYPE: "requested"}))
        span = self._tracer.start_span(
            f"{c.TOOL_SPAN} {name}",
            context=self._root_context,
            attributes={
                c.GEN_AI_OPERATION_NAME: "execute_tool",
                c.GEN_AI_TOOL_NAME: name,
                c.GEN_AI_TOOL_CALL_ID: call_id,
                c.GEN_AI_TOOL_TYPE: "function",
                c.TOOL_ARGS_SIZE: tool.args_size,
            },
            links=links,
            start_time=self._ns(tool.at),
        )
        if isinstance(result, str) and result.startswith("error"):
            span.set_attribute(c.ERROR_TYPE, "tool_error")  # never the message: it may quote the caller
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=self._ns(end_at))

    # ---- the control plane: actions ----

    def action_event(self, action: ControlAction, name: str, at: float, attrs: Mapping[str, Any]) -> None:
        if self._root is None or self._ended:
            return
        ns = self._ns(at)
        state = self._actions.get(action.id)
        if state is None:
            if name != "enqueued":
                return
            self._action_count += 1
            span = self._child(
                f"{c.ACTION_SPAN} {action.kind.name}",
                ns,
                {
                    c.ACTION_ID: action.id,
                    c.ACTION_KIND: action.kind.name,
                    c.CONTROL_HOST: self._call.control_host,
                    c.CONTROL_FINGERPRINT: self._call.control_fingerprint,
                },
            )
            state = self._actions[action.id] = _Action(span, action.kind.name)
        span = state.span
        event_attributes = {_EVENT_KEYS.get(key, f"vox.{key}"): value for key, value in attrs.items()}
        if name == "armed" and isinstance(attrs.get("turn"), int):
            state.carrier = attrs["turn"]
            span.set_attribute(c.ACTION_CARRIER_TURN, attrs["turn"])
        elif name == "released":
            turn = self._releasing_turn(state)
            reason = str(attrs.get("reason", ""))
            span.set_attribute(c.ACTION_RELEASE_REASON, reason)
            if turn is not None:
                seq, turn_context = turn
                event_attributes[c.TURN_SEQ] = seq
                span.add_link(turn_context, {c.LINK_TYPE: "released_by", c.ACTION_RELEASE_REASON: reason})
        elif name == "sent" and isinstance(attrs.get("attempt"), int):
            state.progress.attempts = attrs["attempt"]
        span.add_event(name, attributes=_attributes(event_attributes), timestamp=ns)
        if name in _OUTCOMES:
            self._finish(action.id, state, name, attrs, ns, keep_open=action.kind.reports_outcome)
            if state.on_the_phone and state.phone_result is not None:  # the phone was faster
                self._end_on_the_phone(action.id, state, *state.phone_result, ns)
        elif name in _TELEPHONY_ENDS:
            if state.on_the_phone:
                self._end_on_the_phone(action.id, state, name, attrs, ns)
            else:  # reported before the POST's answer was read: ends the span at the answer
                state.phone_result = (name, dict(attrs))

    def _end_on_the_phone(
        self, action_id: str, state: _Action, name: str, attrs: Mapping[str, Any], ns: int
    ) -> None:
        state.span.set_attributes(
            _attributes(
                {
                    c.ACTION_TELEPHONY: name.removeprefix("telephony."),
                    c.ACTION_TELEPHONY_REASON: attrs.get("reason"),
                }
            )
        )
        state.span.end(end_time=ns)
        del self._actions[action_id]

    def _releasing_turn(self, state: _Action) -> tuple[int, SpanContext] | None:
        """The agent turn whose end released the action: its carrier, or else the open turn."""
        if state.carrier is not None and state.carrier in self._agent_turns:
            return state.carrier, self._agent_turns[state.carrier]
        if self._agent_turn is not None:
            return self._agent_turn.seq, self._agent_turn.span.get_span_context()
        return None

    def _finish(
        self, action_id: str, state: _Action, name: str, attrs: Mapping[str, Any], ns: int, *, keep_open: bool
    ) -> None:
        span = state.span
        reason = str(attrs.get("reason", name))
        span.set_attributes(
            _attributes(
                {
                    c.ACTION_OUTCOME: _OUTCOMES[name],
                    c.ACTION_REASON: reason,
                    c.ACTION_ATTEMPTS: attrs.get("attempts"),
                }
            )
        )
        if name == "failed":
            span.set_attribute(c.ERROR_TYPE, reason)
            span.set_status(Status(StatusCode.ERROR, reason))
        if keep_open and name == "accepted":  # its outcome on the phone is still to come
            state.on_the_phone = True
            return
        span.end(end_time=ns)
        del self._actions[action_id]

    @contextlib.contextmanager
    def delivering(self, action: ControlAction) -> Iterator[None]:
        """The action's span is the current span around its POSTs: their HTTP spans are its
        children and the W3C headers the client injects name it. Entered and left in one task."""
        state = self._actions.get(action.id)
        if state is None:
            yield
            return
        token = otel_context.attach(
            with_delivery_progress(state.progress, trace.set_span_in_context(state.span))
        )
        try:
            yield
        finally:
            otel_context.detach(token)

    # ---- helpers ----

    def _ns(self, at: float) -> int:
        return self._clock.ns(at)

    def _child(self, name: str, start_ns: int, attributes: Mapping[str, AttributeValue | None]) -> Span:
        return self._tracer.start_span(
            name, context=self._root_context, attributes=_attributes(attributes), start_time=start_ns
        )


class TracingObserverFactory:
    """`TelephonyAgentApp`'s observer factory for tracing, bound to one tracer provider.

    Also instruments the app's pooled control client (`instrument_http_client`), so each POST
    is an HTTP span under its action's span.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider,
        *,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.tracer_provider = tracer_provider
        self._tracer = tracer_provider.get_tracer(__name__)
        self._clock = clock  # must be the app's clock (TelephonyAgentApp.clock)
        self._wall_clock_ns = wall_clock_ns

    def __call__(self, call: CallInfo) -> CallObserver:
        return TracingObserver(call, self._tracer, clock=EpochClock(self._clock, self._wall_clock_ns))

    def instrument_http_client(self, client: httpx.AsyncClient) -> None:
        instrument_http_client(client, self.tracer_provider)


def _attributes(values: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Only the values a span attribute can hold; None (unknown) is left out."""
    return {key: value for key, value in values.items() if isinstance(value, (str, bool, int, float))}


def _json_size(args: Mapping[str, Any]) -> int:
    try:
        return len(json.dumps(args, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    except (TypeError, ValueError):
        return 0
