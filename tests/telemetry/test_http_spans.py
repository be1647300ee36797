"""Control POSTs as HTTP client spans: the real `CallControl` and `VoxEngineClient` (over an
in-process transport, so every request is seen exactly as sent), traced by the call's observer,
exported over OTLP/HTTP to the loopback receiver."""

from __future__ import annotations

import json
import time

import anyio
import httpx
import pytest
from line.events import AgentTurnEnded, AgentTurnStarted
from opentelemetry.sdk.trace import TracerProvider

from agent.actions import CALL_TRANSFER
from agent.call_control import CallControl
from agent.call_observer import CallInfo
from agent.control_url import parse_control_url
from agent.retry_policy import RetryPolicy
from agent.voxengine_client import VoxEngineClient
from lab.otlp_decode import ReceivedSpan, not_after
from lab.otlp_receiver import OtlpReceiver
from telemetry import TracingObserverFactory

pytestmark = pytest.mark.anyio

TOKEN = "tOkEn-7f3a9c1e5b2d4f6a8c0e"
# Never connected to: an in-process transport answers.
CONTROL_URL = f"https://www-us-35-230.voximplant.com:12093/request/session-42/{TOKEN}"
CLIENT = 3
ERROR = 2
FAST_RETRY = RetryPolicy(
    deadline_s=5.0, attempt_timeout_s=2.0, backoff_initial_s=0.001, backoff_max_s=0.001, jitter_s=0
)


class FakeVoxEngine:
    """Answers POSTs from a script (503, then accepted); HEAD warm-ups get 404."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.posts: list[httpx.Request] = []
        self.heads: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            self.heads.append(request)
            return httpx.Response(404)
        self.posts.append(request)
        status = self.statuses.pop(0)
        body = b"busy"
        if status == 200:
            answer = {"ok": True, "id": request.headers["x-idempotency-key"], "action": "call_transfer"}
            body = json.dumps(answer).encode()
        # A streamed body, as from the network (the client reads it with aiter_raw).
        return httpx.Response(
            status, headers={"content-length": str(len(body))}, stream=httpx.ByteStream(body)
        )


def call_info() -> CallInfo:
    target = parse_control_url(CONTROL_URL)
    return CallInfo(
        "c1", "a1", "+15550000001", "+15550000002", target.host, target.fingerprint, None, target.origin
    )


async def run_transfer(
    provider: TracerProvider | None, vox: FakeVoxEngine
) -> tuple[CallControl, list[httpx.Request]]:
    """One transfer through the real control plane: held while turn 1 speaks, released when it
    ends, delivered (with retries) by the call-scoped sender."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(vox))
    observer = None
    if provider is not None:
        tracing = TracingObserverFactory(provider)
        observer = tracing(call_info())
        observer.call_started(call_info(), time.perf_counter())
    control = CallControl(
        target=parse_control_url(CONTROL_URL),
        client=VoxEngineClient(http, retry=FAST_RETRY),
        observer=observer,
    )
    async with http, anyio.create_task_group() as tg:
        tg.start_soon(control.run)
        assert control.request(CALL_TRANSFER, summary="wants a person").status == "held"
        control.observe(AgentTurnStarted())
        control.observe(AgentTurnEnded())
        control.close()
        with anyio.fail_after(5):
            await control.wait_finished()
    if observer is not None:
        observer.call_ended(time.perf_counter())
    return control, vox.posts


def names(header: str, span: ReceivedSpan) -> bool:
    """Whether a W3C traceparent names `span`, sampled (flags may add 0x02, "random trace id")."""
    version, trace_id, span_id, flags = header.split("-")
    return (version, trace_id, span_id) == ("00", span.trace_id, span.span_id) and int(flags, 16) & 0x01 == 1


async def test_each_attempt_is_a_client_span_child_of_the_action_span(
    provider: TracerProvider, receiver: OtlpReceiver
) -> None:
    vox = FakeVoxEngine([503, 200])
    control, posts = await run_transfer(provider, vox)
    assert [o.status for o in control.outcomes] == ["delivered"] and len(posts) == 2
    spans = receiver.collect(provider)

    [action] = [s for s in spans if s.name == "control call_transfer"]
    http_spans = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.start_ns)
    assert [s.name for s in http_spans] == ["POST", "POST"]
    assert all(s.parent_span_id == action.span_id and s.trace_id == action.trace_id for s in http_spans)
    first, second = http_spans
    assert first.attributes["http.request.method"] == "POST"
    assert [s.attributes["http.response.status_code"] for s in http_spans] == [503, 200]
    assert (first.status_code, first.attributes["error.type"]) == (ERROR, "503")
    assert "http.request.resend_count" not in first.attributes  # semconv: only on resends
    assert second.attributes["http.request.resend_count"] == 1
    assert {s.attributes["server.address"] for s in http_spans} == {"www-us-35-230.voximplant.com"}
    assert {s.attributes["server.port"] for s in http_spans} == {12093}
    assert {s.attributes["url.full"] for s in http_spans} == {
        "https://www-us-35-230.voximplant.com:12093/REDACTED"
    }

    # Delivery starts when the turn that carried the confirmation ends, inside the action span.
    [turn] = [s for s in spans if s.name == "agent.turn"]
    assert [link.span_id for link in action.links] == [turn.span_id]
    assert action.event("released").time_ns == turn.end_ns
    assert not_after(turn.end_ns, first.start_ns)
    assert first.start_ns < first.end_ns <= second.start_ns < second.end_ns
    assert not_after(action.start_ns, first.start_ns) and not_after(second.end_ns, action.end_ns)
    assert action.event_names() == [
        "armed", "released", "retry", "accepted",
        "call_ended",  # a transfer's span waits for VoxEngine's outcome, which this call never got
    ]  # fmt: skip


async def test_wire_headers_name_the_http_span_and_the_action_span(
    provider: TracerProvider, receiver: OtlpReceiver
) -> None:
    _, posts = await run_transfer(provider, FakeVoxEngine([503, 200]))
    spans = receiver.collect(provider)
    [action] = [s for s in spans if s.name == "control call_transfer"]
    http_spans = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.start_ns)
    for request, span in zip(posts, http_spans, strict=True):
        # Both name this attempt's POST span (a child of the action span): `X-Traceparent` is the
        # mirror VoxEngine shows the scenario, which logs it.
        assert names(request.headers["traceparent"], span)
        assert names(request.headers["x-traceparent"], span)
        assert span.parent_span_id == action.span_id
        assert "tracestate" not in request.headers and "x-tracestate" not in request.headers
        assert request.headers["x-idempotency-key"] == action.attributes["vox.action.id"]


async def test_the_control_url_secret_never_leaves_in_a_span(
    provider: TracerProvider, receiver: OtlpReceiver
) -> None:
    await run_transfer(provider, FakeVoxEngine([503, 200]))
    spans = receiver.collect(provider)
    payload = receiver.raw()
    assert payload and len(spans) == 5
    for secret in (TOKEN, "session-42", "/request/"):
        assert secret.encode() not in payload
    root = next(s for s in spans if s.name == "call")
    assert root.attributes["vox.control.fingerprint"] == parse_control_url(CONTROL_URL).fingerprint


async def test_the_warm_up_outside_a_call_span_makes_no_trace(
    provider: TracerProvider, receiver: OtlpReceiver
) -> None:
    vox = FakeVoxEngine([200])
    await run_transfer(provider, vox)
    spans = receiver.collect(provider)
    assert len(vox.heads) == 1  # the sender warmed the connection...
    assert not any(s.name == "HEAD" for s in spans)  # ...and that request is in no trace
    assert len({s.trace_id for s in spans}) == 1


async def test_without_tracing_no_trace_headers_are_sent() -> None:
    control, posts = await run_transfer(None, FakeVoxEngine([200]))
    [post] = posts
    assert [o.status for o in control.outcomes] == ["delivered"]
    assert not {"traceparent", "x-traceparent", "tracestate", "x-tracestate"} & set(post.headers)
