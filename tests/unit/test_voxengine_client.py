"""The VoxEngine client against the lab's emulator over real loopback HTTP: what is retried,
what is not, the total deadline, one id per action, one pooled connection, signing."""

from __future__ import annotations

import json

import anyio
import pytest

from agent.action_events import Answered, Retrying, Sent
from agent.actions import CALL_TRANSFER, END_CALL, ControlAction
from agent.control_url import parse_control_url
from agent.retry_policy import RetryPolicy
from agent.voxengine_client import Delivery, VoxEngineClient
from lab.faults import Fault, FaultPlan
from lab.voxengine_emulator import VoxEngineEmulator

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(
    deadline_s=3.0, attempt_timeout_s=0.5, backoff_initial_s=0.02, backoff_max_s=0.1, jitter_s=0.01
)


async def deliver(
    emulator: VoxEngineEmulator,
    action: ControlAction,
    *,
    policy: RetryPolicy = FAST,
    secret: str | None = None,
    url: str | None = None,
) -> tuple[Delivery, list[Sent | Retrying | Answered]]:
    target = parse_control_url(url or emulator.control_url(), allow_local=True)
    events: list[Sent | Retrying | Answered] = []
    async with emulator.client() as http:  # by name, through the production connection layer
        client = VoxEngineClient(http, retry=policy, secret=secret)
        result = await client.deliver(target, action, events.append)
    return result, events


async def test_accepted_on_first_attempt_with_the_contract_body_and_headers() -> None:
    action = ControlAction(CALL_TRANSFER, {"summary": "needs billing"})
    async with VoxEngineEmulator() as emulator:
        result, events = await deliver(emulator, action)
    assert result == Delivery(True, "accepted", 1)
    [request] = emulator.requests
    assert json.loads(request.body) == {
        "id": action.id,
        "action": "call_transfer",
        "summary": "needs billing",
    }
    assert request.headers["x-idempotency-key"] == action.id
    assert request.headers["content-type"] == "application/json"
    assert [type(e) for e in events] == [Sent, Answered]


@pytest.mark.parametrize(
    "fault",
    [Fault.http(500), Fault.http(502), Fault.http(503), Fault.drop(), Fault.non_json(), Fault.hang()],
    ids=["500", "502", "503", "drop", "non_json", "hang"],
)
async def test_transient_failures_are_retried_with_the_same_id(fault: Fault) -> None:
    action = ControlAction(END_CALL)
    async with VoxEngineEmulator(faults=FaultPlan(sequence=(fault,))) as emulator:
        result, events = await deliver(emulator, action)
    assert result.accepted and result.attempts == 2
    assert {r.id for r in emulator.requests} == {action.id}
    assert len(emulator.effects) == 1
    assert sum(isinstance(e, Retrying) for e in events) == 1


async def test_429_honours_retry_after() -> None:
    faults = FaultPlan(sequence=(Fault.http(429, retry_after_s=1),))
    async with VoxEngineEmulator(faults=faults) as emulator:
        result, events = await deliver(emulator, ControlAction(END_CALL))
    assert result.accepted and result.attempts == 2
    first, second = emulator.requests
    assert second.time - first.time >= 1.0  # backoff alone would be ~20 ms
    [retry] = [e for e in events if isinstance(e, Retrying)]
    assert retry.wait_s == 1.0 and retry.reason == "http_429"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [(Fault.http(404), "http_404"), (Fault.http(403), "http_403"), (Fault.not_ok(), "refused:injected")],
)
async def test_final_refusals_are_not_retried(fault: Fault, reason: str) -> None:
    async with VoxEngineEmulator(faults=FaultPlan(sequence=(fault,))) as emulator:
        result, _ = await deliver(emulator, ControlAction(END_CALL))
    assert result == Delivery(False, reason, 1)
    assert len(emulator.requests) == 1 and emulator.effects == []


async def test_contract_refusal_reason_is_reported() -> None:
    async with VoxEngineEmulator() as emulator:
        emulator.hang_up()  # the caller already hung up
        result, _ = await deliver(emulator, ControlAction(CALL_TRANSFER))
    assert result == Delivery(False, "refused:call_ended", 1)


async def test_a_host_that_never_answers_costs_at_most_the_deadline() -> None:
    policy = RetryPolicy(deadline_s=1.5, attempt_timeout_s=0.4, backoff_initial_s=0.05, backoff_max_s=0.1)
    faults = FaultPlan(rates={"hang": 1.0})
    async with VoxEngineEmulator(faults=faults) as emulator:
        started = anyio.current_time()
        result, _ = await deliver(emulator, ControlAction(END_CALL), policy=policy)
        elapsed = anyio.current_time() - started
    assert not result.accepted and result.reason == "deadline_exceeded:timeout"
    assert result.attempts >= 2
    assert elapsed <= policy.deadline_s + 0.5


async def test_connection_refused_is_retried_until_the_deadline() -> None:
    async with VoxEngineEmulator() as emulator:
        url = emulator.control_url()
    # The emulator is gone: nothing listens on that port any more.
    policy = RetryPolicy(deadline_s=0.6, attempt_timeout_s=0.2, backoff_initial_s=0.02, backoff_max_s=0.05)
    result, _ = await deliver(emulator, ControlAction(END_CALL), policy=policy, url=url)
    assert not result.accepted and result.reason == "deadline_exceeded:connect_error"
    assert result.attempts >= 2


async def test_one_pooled_connection_serves_the_warm_up_and_every_post() -> None:
    async with VoxEngineEmulator() as emulator:
        target = parse_control_url(emulator.control_url(), allow_local=True)
        async with emulator.client() as http:
            client = VoxEngineClient(http, retry=FAST)
            await client.warm(target)
            for kind in (CALL_TRANSFER, END_CALL):
                assert (await client.deliver(target, ControlAction(kind))).accepted
    assert emulator.warmups == 1
    assert emulator.connections == 1
    assert {r.connection for r in emulator.requests} == {1}


async def test_signed_requests_are_accepted_by_a_signing_receiver() -> None:
    async with VoxEngineEmulator(secret="s3cret") as emulator:
        signed, _ = await deliver(emulator, ControlAction(END_CALL), secret="s3cret")
        wrong, _ = await deliver(emulator, ControlAction(CALL_TRANSFER), secret="other")
        unsigned, _ = await deliver(emulator, ControlAction(CALL_TRANSFER))
    assert signed.accepted
    assert wrong == Delivery(False, "refused:bad_signature", 1)
    assert unsigned == Delivery(False, "refused:missing_signature", 1)
    assert emulator.requests[0].headers["x-vox-signature"].startswith("t=")


async def test_a_hang_up_whose_answer_was_lost_ends_as_session_ended_once_the_session_is_gone() -> None:
    # VoxEngine takes the hang-up at once but its answer is slow; the scenario terminates the
    # session 1 s later, which closes the connection unanswered, and then nothing listens.
    policy = RetryPolicy(deadline_s=6.0, attempt_timeout_s=2.0, backoff_initial_s=0.05, backoff_max_s=0.1)
    faults = FaultPlan(sequence=(Fault.slow(5.0),))
    async with VoxEngineEmulator(faults=faults, terminate_grace_s=1.0) as emulator:
        result, events = await deliver(emulator, ControlAction(END_CALL), policy=policy)
        assert emulator.terminated()
    assert [e.action for e in emulator.effects] == ["end_call"]
    assert result == Delivery(False, "session_ended", 2)
    answers = [e.reason for e in events if isinstance(e, Answered)]
    assert answers == ["connection_lost", "connect_error"]


async def test_a_transfer_is_never_taken_for_a_session_that_ended() -> None:
    # Nothing listening before anything was sent proves nothing: retried to the deadline.
    async with VoxEngineEmulator() as emulator:
        url = emulator.control_url()
    policy = RetryPolicy(deadline_s=0.6, attempt_timeout_s=0.2, backoff_initial_s=0.02, backoff_max_s=0.05)
    result, _ = await deliver(emulator, ControlAction(END_CALL), policy=policy, url=url)
    assert result.reason == "deadline_exceeded:connect_error"
