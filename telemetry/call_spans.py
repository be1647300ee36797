"""The call's trace: a `CallObserver` that turns one call's hooks into spans.

One trace per call (docs/tracing.md has the full table):

    call                                  root, from call_started to call_ended
    ├── agent.turn                        AgentTurnStarted → AgentTurnEnded (speech played)
    ├── user.turn                         UserTurnStarted → UserTurnEnded
    ├── execute_tool {name}               AgentToolCalled → AgentToolReturned
    └── control {kind}                    enqueued → accepted / failed / cancelled / session_ended
        │                                 (a transfer: accepted → telephony.ringing →
        │                                  telephony.connected / telephony.failed)
        └── POST                          one per attempt: `sent` → `answered`

The action span carries an event per step after its start (armed, released, retry,
accepted/failed/cancelled/session_ended, and for an action whose outcome VoxEngine reports later,
telephony.ringing/connected/failed; each attempt is its POST span) and a link to the agent turn
whose end released it; the tool span that requested it links to it. A transfer's span stays
open after its acceptance until VoxEngine says how it ended on the phone, or the call ends.
Every hook runs on the event loop, quickly, and never raises (`ObserverGroup` contains it
anyway). Spans come from the provider's `Tracer` (`start_span(start_time=...)`,
`end(end_time=...)`): its sampler, span limits, processors and exporters apply as to any span.
Only turns, tools, actions and POST attempts are spans; a word's acknowledgement costs one dict
lookup, so tracing stays a small part of a call's CPU (bench/README.md, "Tracing").

Timestamps: the hooks give `time.perf_counter()` seconds; each is placed on the epoch at
`wall_at_start + (at - perf_at_start)`, one offset sampled when the observer is created (as the
call starts), so every span of the call, POST attempts included, sits on one monotonic time axis
that a wall-clock step during the call cannot bend.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import Token
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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
from opentelemetry.trace import (
    Link,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
)
from opentelemetry.util.types import AttributeValue

from agent.action_events import (
    ActionEvent,
    Answered,
    Armed,
    Delivered,
    Enqueued,
    Failed,
    Finished,
    OwnSideEnded,
    Released,
    Retrying,
    Sent,
    TelephonyReported,
)
from agent.actions import ControlAction
from agent.call_observer import CallInfo, CallObserver
from telemetry import conventions as c
from telemetry.redaction import mask_party

_TELEPHONY_ENDS = ("connected", "failed", "completed")
# An empty context: the call's root span has no parent, whatever context its hook runs in.
_NEW_TRACE = otel_context.Context()


class EpochClock:
    """Hook timestamps (seconds on `clock`) → epoch nanoseconds, on one offset."""

    def __init__(
        self, clock: Callable[[], float] = time.perf_counter, wall_clock_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self._clock = clock
        self._wall_ns = wall_clock_ns()
        self._at = clock()

    def ns(self, at: float) -> int:
        return self._wall_ns + round((at - self._at) * 1e9)

    def now_ns(self) -> int:
        return self.ns(self._clock())


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
    carrier: int | None = None
    requested_by_tool: bool = False
    on_the_phone: bool = False  # accepted; VoxEngine's outcome events still to come
    phone_result: TelephonyReported | None = None  # came before the POST's answer
    attempt: tuple[Span, Token[otel_context.Context]] | None = None  # the POST, its token


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
        self._in_call = _NEW_TRACE  # the root span's context, once it is open
        self._on_harness: dict[type, Callable[[InputEvent, float], None]] = {
            AgentTextSent: self._agent_text,
            UserTextSent: self._user_text,
            AgentTurnStarted: self._agent_turn_started,
            AgentTurnEnded: self._agent_turn_ended,
            UserTurnStarted: self._user_turn_started,
            UserTurnEnded: self._user_turn_ended,
            CallEnded: self._harness_call_ended,
        }
        self._ended = False
        self._agent_turn: _Turn | None = None
        self._agent_turns: dict[int, SpanContext] = {}
        self._user_turn: _Turn | None = None
        self._user_turns = 0
        self._tools: dict[str, _ToolCall] = {}
        self._actions: dict[str, _Action] = {}
        self._action_count = 0
        self._http_attributes: dict[str, AttributeValue] = {}

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
        # A new trace, whatever context the hook runs in: one trace per call, sampled as a whole.
        self._root = self._tracer.start_span(
            c.CALL_SPAN, _NEW_TRACE, kind=SpanKind.SERVER, attributes=attributes, start_time=self._ns(at)
        )
        self._in_call = trace.set_span_in_context(self._root, _NEW_TRACE)
        self._http_attributes = _http_attributes(call.control_origin)

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
        # Called for every harness event, a word's ack included: one dict lookup for the rest.
        handler = self._on_harness.get(type(event))
        if handler is not None and self._root is not None and not self._ended:
            handler(event, at)

    def _agent_turn_started(self, event: InputEvent, at: float) -> None:
        ns = self._ns(at)
        self._end_agent_turn(ns, "next_turn")  # the flush policy does the same
        seq = len(self._agent_turns) + 1
        span = self._child(c.AGENT_TURN_SPAN, ns, {c.TURN_SEQ: seq})
        self._agent_turn = _Turn(span, seq)
        self._agent_turns[seq] = span.get_span_context()

    def _agent_text(self, event: InputEvent, at: float) -> None:
        if self._agent_turn is not None and isinstance(event, AgentTextSent):
            self._agent_turn.characters += len(event.content)

    def _agent_turn_ended(self, event: InputEvent, at: float) -> None:
        if self._agent_turn is not None and isinstance(event, AgentTurnEnded):
            spoken = [item.content for item in event.content if isinstance(item, AgentTextSent)]
            if spoken:  # the harness's own account of the turn wins over the running count
                self._agent_turn.characters = sum(map(len, spoken))
            self._end_agent_turn(self._ns(at), "idle")

    def _user_turn_started(self, event: InputEvent, at: float) -> None:
        ns = self._ns(at)
        self._end_user_turn(ns, "next_turn")
        barge_in = self._agent_turn is not None
        if self._agent_turn is not None and not self._agent_turn.interrupted:
            self._agent_turn.interrupted = True
            self._agent_turn.span.add_event("interrupted", timestamp=ns)
        self._user_turns += 1
        span = self._child(c.USER_TURN_SPAN, ns, {c.TURN_SEQ: self._user_turns, c.TURN_BARGE_IN: barge_in})
        self._user_turn = _Turn(span, self._user_turns)

    def _user_text(self, event: InputEvent, at: float) -> None:
        if self._user_turn is not None and isinstance(event, UserTextSent):
            self._user_turn.characters += len(event.content)

    def _user_turn_ended(self, event: InputEvent, at: float) -> None:
        if self._user_turn is not None and isinstance(event, UserTurnEnded):
            heard = [item.content for item in event.content if isinstance(item, UserTextSent)]
            if heard:
                self._user_turn.characters = sum(map(len, heard))
            self._end_user_turn(self._ns(at), "idle")

    def _harness_call_ended(self, event: InputEvent, at: float) -> None:
        if self._root is not None:
            self._root.add_event("harness.call_ended", timestamp=self._ns(at))

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
            self._in_call,
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

    def action_event(self, action: ControlAction, event: ActionEvent, at: float) -> None:
        if self._root is None or self._ended:
            return
        ns = self._ns(at)
        state = self._actions.get(action.id)
        if state is None:
            if not isinstance(event, Enqueued):
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
        event_attributes = _event_attributes(event)
        match event:
            case Enqueued():
                return  # the span's start
            case Sent():
                self._start_attempt(state, event, ns)
                return
            case Answered():
                self._end_attempt(state, event, ns)
                return
            case Armed(turn=turn):
                state.carrier = turn
                span.set_attribute(c.ACTION_CARRIER_TURN, turn)
            case Released(reason=reason):
                span.set_attribute(c.ACTION_RELEASE_REASON, reason)
                released_by = self._releasing_turn(state)
                if released_by is not None:
                    seq, turn_context = released_by
                    event_attributes[c.TURN_SEQ] = seq
                    span.add_link(turn_context, {c.LINK_TYPE: "released_by", c.ACTION_RELEASE_REASON: reason})
        span.add_event(_span_event_name(event), attributes=_attributes(event_attributes), timestamp=ns)
        if isinstance(event, Finished):
            self._finish(action.id, state, event, ns, keep_open=action.kind.reports_outcome)
            if state.on_the_phone and state.phone_result is not None:  # the phone was faster
                self._end_on_the_phone(action.id, state, state.phone_result, ns)
        elif isinstance(event, TelephonyReported) and event.status in _TELEPHONY_ENDS:
            if state.on_the_phone:
                self._end_on_the_phone(action.id, state, event, ns)
            else:  # reported before the POST's answer was read: ends the span at the answer
                state.phone_result = event

    def _end_on_the_phone(self, action_id: str, state: _Action, event: TelephonyReported, ns: int) -> None:
        state.span.set_attributes(
            _attributes(
                {
                    c.ACTION_TELEPHONY: event.status,
                    c.ACTION_TELEPHONY_REASON: event.reason,
                    c.ACTION_PLAYOUT_OFFSET_MS: event.playout_offset_ms,
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

    def _finish(self, action_id: str, state: _Action, event: Finished, ns: int, *, keep_open: bool) -> None:
        span = state.span
        span.set_attributes(
            _attributes(
                {
                    c.ACTION_OUTCOME: event.name,
                    c.ACTION_REASON: event.reason,
                    c.ACTION_ATTEMPTS: event.attempts,
                }
            )
        )
        if isinstance(event, Failed):
            span.set_attribute(c.ERROR_TYPE, event.reason)
            span.set_status(Status(StatusCode.ERROR, event.reason))
        if keep_open and isinstance(event, Delivered):  # its outcome on the phone is still to come
            state.on_the_phone = True
            return
        span.end(end_time=ns)
        del self._actions[action_id]

    # ---- the control plane: each POST attempt ----

    def _start_attempt(self, state: _Action, sent: Sent, ns: int) -> None:
        """A CLIENT span per attempt, current while it runs, so the W3C headers the client
        injects (`traceparent`, and its `X-Traceparent` mirror that VoxEngine shows the scenario)
        name it. Built from the control plane's own `sent` / `answered` hooks: an HTTP client
        instrumentation would wrap every request of the pooled client (the warm-ups too) and cost
        more than the rest of the call's trace together (bench/README.md)."""
        attempt = sent.attempt
        span = self._tracer.start_span(
            c.HTTP_SPAN,
            trace.set_span_in_context(state.span, _NEW_TRACE),
            kind=SpanKind.CLIENT,
            attributes=_attributes(
                {
                    **self._http_attributes,
                    c.HTTP_REQUEST_RESEND_COUNT: attempt - 1 if attempt > 1 else None,
                }
            ),
            start_time=ns,
        )
        state.attempt = (span, otel_context.attach(trace.set_span_in_context(span)))

    def _end_attempt(self, state: _Action, answer: Answered | None, ns: int) -> None:
        """Ends the POST's span at its answer, or cut short (no answer: the deadline, the drain)."""
        if state.attempt is None:
            return
        span, token = state.attempt
        state.attempt = None
        otel_context.detach(token)
        status = answer.status if answer is not None else None
        host, port = answer.peer if answer is not None and answer.peer is not None else (None, None)
        error = (
            "cancelled" if answer is None else str(status) if status is not None and status >= 400 else None
        )
        if answer is not None and status is None and answer.reason != "accepted":
            error = answer.reason  # a transport failure: timeout, connection_lost, tls_error, ...
        span.set_attributes(
            _attributes(
                {
                    c.HTTP_RESPONSE_STATUS_CODE: status,
                    c.NETWORK_PEER_ADDRESS: host,
                    c.NETWORK_PEER_PORT: port,
                    c.ERROR_TYPE: error,
                }
            )
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=ns)

    @contextlib.contextmanager
    def delivering(self, action: ControlAction) -> Iterator[None]:
        """The action's span is the current span around its delivery; each attempt's span is
        current while it runs. Entered and left in one task."""
        state = self._actions.get(action.id)
        if state is None:
            yield
            return
        token = otel_context.attach(trace.set_span_in_context(state.span))
        try:
            yield
        finally:
            if state.attempt is not None:  # cut short (the deadline, or the call's drain bound)
                self._end_attempt(state, None, self._clock.now_ns())
            otel_context.detach(token)

    # ---- helpers ----

    def _ns(self, at: float) -> int:
        return self._clock.ns(at)

    def _child(self, name: str, start_ns: int, attributes: Mapping[str, AttributeValue | None]) -> Span:
        return self._tracer.start_span(
            name, self._in_call, attributes=_attributes(attributes), start_time=start_ns
        )


class TracingObserverFactory:
    """`TelephonyAgentApp`'s observer factory for tracing, bound to one tracer provider."""

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


def _span_event_name(event: ActionEvent) -> str:
    """The action span's event names, as docs/tracing.md documents them: the outcome VoxEngine
    accepted keeps its span event `accepted` (its `vox.action.outcome` is `delivered`)."""
    match event:
        case Delivered():
            return "accepted"
        case TelephonyReported(status=status):
            return f"telephony.{status}"
        case _:
            return event.name


def _event_attributes(event: ActionEvent) -> dict[str, Any]:
    """The span event's attributes (docs/tracing.md "Action span events")."""
    match event:
        case Armed(turn=turn):
            return {c.TURN_SEQ: turn}
        case Released(reason=reason) | OwnSideEnded(reason=reason):
            return {c.EVENT_REASON: reason}
        case Retrying():
            return {
                c.EVENT_ATTEMPT: event.attempt,
                c.EVENT_REASON: event.reason,
                c.EVENT_RETRY_WAIT_S: event.wait_s,
            }
        case Finished():
            return {c.EVENT_REASON: event.reason, c.ACTION_ATTEMPTS: event.attempts}
        case TelephonyReported():
            return {
                c.EVENT_REASON: event.reason,
                "vox.sip_code": event.sip_code,
                "vox.playout_offset_ms": event.playout_offset_ms,
                "vox.destination": event.destination,
                "vox.dial_attempt": event.dial_attempt,
                "vox.amd": event.amd,
            }
        case _:
            return {}


def _attributes(values: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Only the values a span attribute can hold; None (unknown) is left out."""
    return {key: value for key, value in values.items() if isinstance(value, (str, bool, int, float))}


def _http_attributes(origin: str | None) -> dict[str, AttributeValue]:
    """The stable HTTP client attributes every attempt of this call shares (the path is never
    recorded: `url.full` is the origin and `/REDACTED`, as `telemetry.redaction` writes it)."""
    attributes: dict[str, AttributeValue] = {
        c.HTTP_REQUEST_METHOD: "POST",
        c.NETWORK_PROTOCOL_VERSION: "1.1",
    }
    if origin is not None:
        parts = urlsplit(origin)
        attributes |= _attributes(
            {
                c.SERVER_ADDRESS: parts.hostname,
                c.SERVER_PORT: parts.port or 443,
                c.URL_FULL: f"{origin}/REDACTED",
            }
        )
    return attributes


def _json_size(args: Mapping[str, Any]) -> int:
    try:
        return len(json.dumps(args, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    except (TypeError, ValueError):
        return 0
