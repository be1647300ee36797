"""The span model, driven by synthetic hook calls on a fixed clock, exported over real OTLP/HTTP
to a loopback receiver and checked as decoded from the wire."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from line.events import (
    AgentEndCall,
    AgentSendText,
    AgentTextSent,
    AgentToolCalled,
    AgentToolReturned,
    AgentTurnEnded,
    AgentTurnStarted,
    CallEnded,
    UserTextSent,
    UserTurnEnded,
    UserTurnStarted,
)
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from agent.action_events import (
    Answered,
    Armed,
    Cancelled,
    Delivered,
    Enqueued,
    Failed,
    Released,
    Retrying,
    Sent,
    TelephonyReported,
)
from agent.actions import CALL_TRANSFER, END_CALL, ControlAction
from agent.call_observer import CallInfo, CallObserver, ObserverGroup
from lab.otlp_decode import ReceivedSpan
from lab.otlp_receiver import OtlpReceiver
from telemetry import TracingObserverFactory, create_tracer_provider

WALL0 = 1_700_000_000_000_000_000  # the wall clock when the call starts (ns)
T0 = 1000.0  # perf_counter at the same moment
SERVER, INTERNAL, CLIENT = 2, 1, 3
ERROR = 2

CALL = CallInfo(
    call_id="call-1",
    agent_call_id="agent-call-1",
    caller="+15550000001",
    callee="+15550000042",
    control_host="127.0.0.1",
    control_fingerprint="0123456789ab",
    control_refusal=None,
    control_origin="https://www-us-35-230.voximplant.com:12093",
)


def ns(at: float) -> int:
    return WALL0 + round((at - T0) * 1e9)


def observe(provider: TracerProvider, call: CallInfo = CALL) -> CallObserver:
    # Through ObserverGroup, as the app calls it.
    return ObserverGroup(
        [TracingObserverFactory(provider, clock=lambda: T0, wall_clock_ns=lambda: WALL0)(call)]
    )


def by_name(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return sorted((s for s in spans if s.name == name), key=lambda s: s.start_ns)


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    [span] = by_name(spans, name)
    return span


def text(*words: str) -> list[AgentTextSent]:
    return [AgentTextSent(content=w) for w in words]


@pytest.fixture
def transfer_call(provider: TracerProvider, receiver: OtlpReceiver) -> Iterator[list[ReceivedSpan]]:
    """A whole transfer call: introduction, caller asks, the tool holds a transfer, the
    confirmation plays, the POST gets a 503 then is accepted."""
    o = observe(provider)
    action = ControlAction(CALL_TRANSFER, {"summary": "wants a person"})
    o.call_started(CALL, T0)
    o.harness_event(AgentTurnStarted(), 1000.1)
    for at, word in ((1000.2, "Hello,"), (1000.3, "how can I help?")):
        o.harness_event(AgentTextSent(content=word), at)
    o.harness_event(AgentTurnEnded(content=text("Hello,", "how can I help?")), 1001.0)
    o.harness_event(UserTurnStarted(), 1001.5)
    o.harness_event(UserTextSent(content="A person please"), 1001.6)
    o.harness_event(UserTurnEnded(content=[UserTextSent(content="A person please")]), 1002.0)
    o.action_event(action, Enqueued("call_transfer"), 1002.5)
    o.agent_output(AgentSendText(text="Connecting you now."), 1002.55)
    o.agent_output(
        AgentToolCalled(tool_call_id="tc1", tool_name="call_transfer", tool_args=action.params), 1002.6
    )
    o.agent_output(
        AgentToolReturned(tool_call_id="tc1", tool_name="call_transfer", result="success"), 1002.61
    )
    o.harness_event(AgentTurnStarted(), 1003.0)
    o.action_event(action, Armed(2), 1003.0)
    o.harness_event(AgentTurnEnded(content=text("Connecting", "you", "now.")), 1004.0)
    o.action_event(action, Released("turn_ended"), 1004.0)
    with o.delivering(action):
        o.action_event(action, Sent(1), 1004.01)
        o.action_event(action, Answered(1, "http_503", 503), 1004.02)
        o.action_event(action, Retrying(1, "http_503", 0.2), 1004.02)
        o.action_event(action, Sent(2), 1004.25)
        o.action_event(action, Answered(2, "accepted", 200), 1004.26)
    o.action_event(action, Delivered("accepted", 2), 1004.3)
    o.action_event(action, TelephonyReported("ringing"), 1004.5)  # VoxEngine's outcome events
    o.action_event(action, TelephonyReported("connected"), 1004.9)
    o.harness_event(CallEnded(), 1005.0)
    o.call_ended(1005.5)
    yield receiver.collect(provider)


def test_one_trace_with_one_root_and_everything_under_it(transfer_call: list[ReceivedSpan]) -> None:
    spans = transfer_call
    assert sorted(s.name for s in spans) == sorted(
        [
            "call",
            "agent.turn",
            "agent.turn",
            "user.turn",
            "execute_tool call_transfer",
            "control call_transfer",
            "POST",
            "POST",
        ]
    )
    assert len({s.trace_id for s in spans}) == 1
    [root] = [s for s in spans if s.parent_span_id is None]
    assert root.name == "call" and root.kind == SERVER
    action = one(spans, "control call_transfer")
    assert all(p.parent_span_id == action.span_id for p in by_name(spans, "POST"))
    assert all(s.parent_span_id == root.span_id for s in spans if s is not root and s.name != "POST")
    assert (root.start_ns, root.end_ns) == (ns(1000.0), ns(1005.5))
    assert root.attributes == {
        "vox.call.id": "call-1",
        "vox.call.agent_call_id": "agent-call-1",
        "vox.call.caller": "+*********01",
        "vox.call.callee": "+*********42",
        "vox.control.host": "127.0.0.1",
        "vox.control.fingerprint": "0123456789ab",
        "vox.call.agent_turns": 2,
        "vox.call.user_turns": 1,
        "vox.call.actions": 1,
    }
    assert root.event_names() == ["harness.call_ended"]
    assert root.resource["service.name"] == "vox-line-agent"


def test_turn_spans_cover_the_turns(transfer_call: list[ReceivedSpan]) -> None:
    intro, confirmation = by_name(transfer_call, "agent.turn")
    assert (intro.start_ns, intro.end_ns) == (ns(1000.1), ns(1001.0))
    assert intro.attributes == {
        "vox.turn.seq": 1,
        "vox.turn.characters": len("Hello,") + len("how can I help?"),
        "vox.turn.interrupted": False,
        "vox.turn.end": "idle",
    }
    assert (confirmation.start_ns, confirmation.end_ns) == (ns(1003.0), ns(1004.0))
    assert confirmation.attributes["vox.turn.seq"] == 2
    assert confirmation.attributes["vox.turn.characters"] == len("Connectingyounow.")
    user = one(transfer_call, "user.turn")
    assert (user.start_ns, user.end_ns) == (ns(1001.5), ns(1002.0))
    assert user.attributes == {
        "vox.turn.seq": 1,
        "vox.turn.barge_in": False,
        "vox.turn.characters": len("A person please"),
        "vox.turn.end": "idle",
    }


def test_action_span_from_enqueued_to_outcome_with_a_step_per_event(
    transfer_call: list[ReceivedSpan],
) -> None:
    action = one(transfer_call, "control call_transfer")
    assert action.kind == INTERNAL
    # A transfer is over when VoxEngine says how it went on the phone, not at its acceptance.
    assert (action.start_ns, action.end_ns) == (ns(1002.5), ns(1004.9))
    # Its start is the enqueue; each attempt's sent → answered is its POST span.
    assert [(e.name, e.time_ns) for e in action.events] == [
        ("armed", ns(1003.0)),
        ("released", ns(1004.0)),
        ("retry", ns(1004.02)),
        ("accepted", ns(1004.3)),
        ("telephony.ringing", ns(1004.5)),
        ("telephony.connected", ns(1004.9)),
    ]
    assert action.event("released").attributes == {"vox.reason": "turn_ended", "vox.turn.seq": 2}
    assert action.event("retry").attributes == {
        "vox.attempt": 1,
        "vox.reason": "http_503",
        "vox.retry.wait_s": 0.2,
    }
    assert action.event("accepted").attributes == {"vox.reason": "accepted", "vox.action.attempts": 2}
    assert {k: v for k, v in action.attributes.items() if k != "vox.action.id"} == {
        "vox.action.kind": "call_transfer",
        "vox.control.host": "127.0.0.1",
        "vox.control.fingerprint": "0123456789ab",
        "vox.action.carrier_turn": 2,
        "vox.action.release_reason": "turn_ended",
        "vox.action.outcome": "delivered",
        "vox.action.reason": "accepted",
        "vox.action.attempts": 2,
        "vox.action.telephony": "connected",
    }
    assert action.status_code == 0


def test_each_attempt_is_a_client_span_timed_by_its_sent_and_answered(
    transfer_call: list[ReceivedSpan],
) -> None:
    failed, accepted = sorted(by_name(transfer_call, "POST"), key=lambda s: s.start_ns)
    assert (failed.start_ns, failed.end_ns) == (ns(1004.01), ns(1004.02))
    assert (accepted.start_ns, accepted.end_ns) == (ns(1004.25), ns(1004.26))
    assert failed.kind == accepted.kind == CLIENT
    assert failed.attributes["http.response.status_code"] == 503
    assert failed.attributes["error.type"] == "503" and failed.status_code == 2
    assert accepted.attributes["http.response.status_code"] == 200 and accepted.status_code == 0
    assert "error.type" not in accepted.attributes
    assert "http.request.resend_count" not in failed.attributes
    assert accepted.attributes["http.request.resend_count"] == 1
    assert {
        k: v
        for k, v in accepted.attributes.items()
        if not k.startswith(("http.response", "http.request.resend"))
    } == {
        "http.request.method": "POST",
        "server.address": "www-us-35-230.voximplant.com",
        "server.port": 12093,
        "url.full": "https://www-us-35-230.voximplant.com:12093/REDACTED",
        "network.protocol.version": "1.1",
    }


def test_action_links_to_the_turn_that_released_it(transfer_call: list[ReceivedSpan]) -> None:
    action = one(transfer_call, "control call_transfer")
    confirmation = by_name(transfer_call, "agent.turn")[1]
    [link] = action.links
    assert (link.trace_id, link.span_id) == (confirmation.trace_id, confirmation.span_id)
    assert link.attributes == {"vox.link.type": "released_by", "vox.action.release_reason": "turn_ended"}
    assert action.event("released").time_ns == confirmation.end_ns  # released by that turn's end


def test_tool_span_covers_the_reported_pair_and_links_the_action(transfer_call: list[ReceivedSpan]) -> None:
    tool = one(transfer_call, "execute_tool call_transfer")
    action = one(transfer_call, "control call_transfer")
    assert (tool.start_ns, tool.end_ns) == (ns(1002.6), ns(1002.61))
    assert tool.attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "call_transfer",
        "gen_ai.tool.call.id": "tc1",
        "gen_ai.tool.type": "function",
        "vox.tool.args_size": len('{"summary":"wants a person"}'),
    }
    [link] = tool.links
    assert (link.span_id, link.attributes) == (action.span_id, {"vox.link.type": "requested"})
    assert "wants a person" not in str(tool)  # arguments are sized, never recorded


def test_barge_in_marks_the_agent_turn_interrupted(provider: TracerProvider, receiver: OtlpReceiver) -> None:
    o = observe(provider)
    o.call_started(CALL, T0)
    o.harness_event(AgentTurnStarted(), 1000.1)
    o.harness_event(UserTurnStarted(), 1000.7)
    o.harness_event(AgentTurnEnded(content=text("Good")), 1000.75)
    o.harness_event(UserTurnEnded(content=[UserTextSent(content="wait")]), 1001.0)
    o.call_ended(1002.0)
    spans = receiver.collect(provider)
    turn, user = one(spans, "agent.turn"), one(spans, "user.turn")
    assert turn.attributes["vox.turn.interrupted"] is True
    assert [(e.name, e.time_ns) for e in turn.events] == [("interrupted", ns(1000.7))]
    assert turn.end_ns == ns(1000.75) and turn.attributes["vox.turn.characters"] == 4
    assert user.attributes["vox.turn.barge_in"] is True


def test_a_turn_started_without_idle_ends_the_previous_one_and_releases_its_action(
    provider: TracerProvider, receiver: OtlpReceiver
) -> None:
    o = observe(provider)
    action = ControlAction(END_CALL)
    o.call_started(CALL, T0)
    o.action_event(action, Enqueued("end_call"), 1000.05)
    o.harness_event(AgentTurnStarted(), 1000.1)
    o.action_event(action, Armed(1), 1000.1)
    o.harness_event(AgentTurnStarted(), 1001.0)  # no idle for turn 1
    o.action_event(action, Released("turn_ended"), 1001.0)
    o.action_event(action, Cancelled("call_ended", 0), 1001.1)
    o.call_ended(1002.0)
    spans = receiver.collect(provider)
    first, second = by_name(spans, "agent.turn")
    assert first.end_ns == ns(1001.0) and first.attributes["vox.turn.end"] == "next_turn"
    assert second.end_ns == ns(1002.0) and second.attributes["vox.turn.end"] == "call_ended"
    action_span = one(spans, "control end_call")
    assert [link.span_id for link in action_span.links] == [first.span_id]


def test_release_without_carrier_links_the_open_turn_or_nothing(
    provider: TracerProvider, receiver: OtlpReceiver
) -> None:
    o = observe(provider)
    early, late = ControlAction(END_CALL), ControlAction(CALL_TRANSFER)
    o.call_started(CALL, T0)
    o.action_event(early, Enqueued(early.kind.name), 1000.1)
    o.action_event(early, Released("no_speech"), 1001.1)  # nothing was speaking
    o.action_event(early, Delivered("accepted", 1), 1001.2)
    o.harness_event(AgentTurnStarted(), 1002.0)
    o.action_event(late, Enqueued(late.kind.name), 1002.1)
    o.action_event(late, Released("max_hold"), 1003.0)  # never armed, a turn is open
    o.action_event(late, Delivered("accepted", 1), 1003.1)
    o.call_ended(1004.0)
    spans = receiver.collect(provider)
    assert one(spans, "control end_call").links == []
    [link] = one(spans, "control call_transfer").links
    assert link.span_id == one(spans, "agent.turn").span_id
    assert one(spans, "control call_transfer").event("released").attributes["vox.turn.seq"] == 1


def test_failed_and_cancelled_outcomes(provider: TracerProvider, receiver: OtlpReceiver) -> None:
    o = observe(provider)
    failed, cancelled = ControlAction(CALL_TRANSFER), ControlAction(END_CALL)
    o.call_started(CALL, T0)
    o.action_event(failed, Enqueued(failed.kind.name), 1000.1)
    o.action_event(failed, Released("no_speech"), 1000.2)
    o.action_event(failed, Failed("deadline_exceeded:http_503", 3), 1010.2)
    o.action_event(cancelled, Enqueued(cancelled.kind.name), 1011.0)
    o.action_event(cancelled, Cancelled("barge_in", 0), 1011.5)
    o.call_ended(1012.0)
    spans = receiver.collect(provider)
    f, c = one(spans, "control call_transfer"), one(spans, "control end_call")
    assert (f.status_code, f.status_message) == (ERROR, "deadline_exceeded:http_503")
    assert f.attributes["error.type"] == "deadline_exceeded:http_503"
    assert f.attributes["vox.action.outcome"] == "failed" and f.attributes["vox.action.attempts"] == 3
    assert c.status_code == 0 and c.attributes["vox.action.outcome"] == "cancelled"
    assert c.event_names() == ["cancelled"] and c.end_ns == ns(1011.5)


def test_a_failed_transfer_and_one_the_call_outlived_never_read_as_errors_of_ours(
    provider: TracerProvider, receiver: OtlpReceiver
) -> None:
    o = observe(provider)
    busy, unknown = ControlAction(CALL_TRANSFER), ControlAction(CALL_TRANSFER)
    o.call_started(CALL, T0)
    for action, at in ((busy, 1000.0), (unknown, 1003.0)):
        o.action_event(action, Enqueued(action.kind.name), at)
        o.action_event(action, Delivered("accepted", 1), at + 0.5)
    o.action_event(busy, TelephonyReported("failed", reason="busy", sip_code=486), 1002.0)
    o.call_ended(1004.0)
    spans = by_name(receiver.collect(provider), "control call_transfer")
    failed, open_at_end = spans
    assert failed.end_ns == ns(1002.0) and failed.status_code == 0
    assert failed.attributes["vox.action.telephony"] == "failed"
    assert failed.attributes["vox.action.telephony_reason"] == "busy"
    assert failed.event("telephony.failed").attributes == {"vox.reason": "busy", "vox.sip_code": 486}
    assert open_at_end.end_ns == ns(1004.0) and open_at_end.status_code == 0
    assert open_at_end.event_names() == ["accepted", "call_ended"]


def test_call_end_closes_whatever_is_still_open(provider: TracerProvider, receiver: OtlpReceiver) -> None:
    o = observe(provider)
    action = ControlAction(CALL_TRANSFER)
    o.call_started(CALL, T0)
    o.harness_event(AgentTurnStarted(), 1000.1)
    o.harness_event(UserTurnStarted(), 1000.2)
    o.agent_output(AgentToolCalled(tool_call_id="t", tool_name="call_transfer"), 1000.3)
    o.action_event(action, Enqueued(action.kind.name), 1000.3)
    o.agent_output(AgentEndCall(), 1000.4)
    o.call_ended(1001.0)
    o.harness_event(AgentTurnStarted(), 1002.0)  # after the end: ignored
    o.action_event(ControlAction(END_CALL), Enqueued("end_call"), 1002.0)
    spans = receiver.collect(provider)
    assert len(spans) == 5 and all(s.end_ns == ns(1001.0) for s in spans if s.name != "call")
    assert one(spans, "call").event_names() == ["agent.end_call"]
    abandoned = one(spans, "control call_transfer")
    assert abandoned.event_names() == ["abandoned"] and abandoned.status_code == ERROR
    assert one(spans, "agent.turn").attributes["vox.turn.end"] == "call_ended"


def test_hooks_before_the_call_starts_or_for_unknown_actions_are_ignored(
    provider: TracerProvider, receiver: OtlpReceiver
) -> None:
    o = observe(provider)
    stray = ControlAction(END_CALL)
    o.harness_event(AgentTurnStarted(), 999.0)
    o.call_started(CALL, T0)
    o.harness_event(AgentTurnEnded(), 1000.1)  # an idle without a turn
    o.harness_event(UserTurnEnded(), 1000.2)
    o.action_event(stray, Released("turn_ended"), 1000.3)
    with o.delivering(stray):
        assert not trace.get_current_span().get_span_context().is_valid
    o.call_ended(1001.0)
    assert [s.name for s in receiver.collect(provider)] == ["call"]


def test_delivering_makes_the_action_span_current_and_restores_after(
    provider: TracerProvider, receiver: OtlpReceiver
) -> None:
    o = observe(provider)
    action = ControlAction(END_CALL)
    o.call_started(CALL, T0)
    o.action_event(action, Enqueued(action.kind.name), 1000.1)
    before = trace.get_current_span()
    with o.delivering(action):
        current = trace.get_current_span().get_span_context()
        o.action_event(action, Sent(1), 1000.2)
        attempt = trace.get_current_span().get_span_context()  # what the client's headers name
        o.action_event(action, Answered(1, "accepted", 200), 1000.25)
        assert trace.get_current_span().get_span_context() == current
        o.action_event(action, Sent(2), 1000.26)  # cut short: ended on the way out
    assert trace.get_current_span() is before
    o.action_event(action, Delivered("accepted", 1), 1000.3)
    o.call_ended(1001.0)
    spans = receiver.collect(provider)
    action_span = one(spans, "control end_call")
    assert format(current.span_id, "016x") == action_span.span_id
    first, cut = by_name(spans, "POST")
    assert format(attempt.span_id, "016x") == first.span_id and first.parent_span_id == action_span.span_id
    assert first.attributes["http.response.status_code"] == 200 and first.status_code == 0
    assert cut.attributes["error.type"] == "cancelled" and cut.attributes["http.request.resend_count"] == 1


def test_each_call_is_its_own_trace(provider: TracerProvider, receiver: OtlpReceiver) -> None:
    for n in range(2):
        info = CallInfo(f"c{n}", f"a{n}", "", "", None, None, "missing")
        o = observe(provider, info)
        o.call_started(info, T0)
        o.harness_event(AgentTurnStarted(), 1000.1)
        o.call_ended(1001.0)
    spans = receiver.collect(provider)
    roots = by_name(spans, "call")
    assert len({s.trace_id for s in spans}) == 2 and len(roots) == 2
    assert roots[0].attributes["vox.control.refusal"] == "missing"
    assert "vox.control.host" not in roots[0].attributes


def test_sampled_out_calls_export_nothing_and_send_unsampled_context(receiver: OtlpReceiver) -> None:
    provider = create_tracer_provider(
        [OTLPSpanExporter(endpoint=receiver.endpoint)], sampler=ALWAYS_OFF, shutdown_on_exit=False
    )
    try:
        o = observe(provider)
        action = ControlAction(END_CALL)
        o.call_started(CALL, T0)
        o.action_event(action, Enqueued(action.kind.name), 1000.1)
        with o.delivering(action):
            assert not trace.get_current_span().is_recording()
            o.action_event(action, Sent(1), 1000.15)
            context = trace.get_current_span().get_span_context()  # what the POST's headers name
            assert context.is_valid and not context.trace_flags.sampled  # traceparent flags 00
            o.action_event(action, Answered(1, "accepted", 200), 1000.18)
        o.action_event(action, Delivered("accepted", 1), 1000.2)
        o.call_ended(1001.0)
        assert receiver.collect(provider) == []
    finally:
        provider.shutdown()


def test_an_action_span_follows_the_sdk_s_event_limit_and_counts_the_rest(
    provider: TracerProvider, receiver: OtlpReceiver
) -> None:
    o = observe(provider)
    action = ControlAction(CALL_TRANSFER)
    o.call_started(CALL, T0)
    o.action_event(action, Enqueued(action.kind.name), 1000.1)
    for n in range(1, 151):  # a VoxEngine that answers 503 for a long time
        o.action_event(action, Retrying(n, "http_503", 0), 1000.1 + n / 1000)
    o.action_event(action, Failed("deadline_exceeded:http_503", 150), 1001.0)
    o.call_ended(1002.0)
    span = one(receiver.collect(provider), "control call_transfer")
    # The SDK's limit (128, OTEL_SPAN_EVENT_COUNT_LIMIT) keeps the latest events: the outcome stays.
    assert len(span.events) == 128 and span.events[-1].name == "failed"
    assert span.events[0].attributes["vox.attempt"] == 150 + 1 - 128 + 1
    [raw] = [
        raw
        for request in receiver.requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for raw in scope_spans.spans
        if raw.name == "control call_transfer"
    ]
    assert raw.dropped_events_count == 150 + 1 - 128  # the outcome event too
    assert span.attributes["vox.action.outcome"] == "failed"  # attributes are never dropped


def test_any_tracer_provider_works_and_a_no_op_one_records_nothing() -> None:
    # Not through ObserverGroup: an exception here must fail the test, not be contained.
    o = TracingObserverFactory(trace.NoOpTracerProvider())(CALL)
    action = ControlAction(END_CALL)
    o.call_started(CALL, T0)
    o.harness_event(AgentTurnStarted(), 1000.1)
    o.action_event(action, Enqueued(action.kind.name), 1000.2)
    with o.delivering(action):
        o.action_event(action, Sent(1), 1000.3)
        assert not trace.get_current_span().get_span_context().is_valid  # no traceparent is sent
        o.action_event(action, Answered(1, "accepted", 200), 1000.4)
    o.action_event(action, Delivered("accepted", 1), 1000.5)
    o.call_ended(1001.0)
