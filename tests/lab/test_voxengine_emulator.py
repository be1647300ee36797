"""The VoxEngine emulator against a real httpx client over loopback."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.control_host import lab_client
from lab.faults import Fault, FaultPlan
from lab.telephony import Destination, Pace, parse_destinations
from lab.tls import LAB_CONTROL_HOST
from lab.voxengine_emulator import MAX_BODY_BYTES, AgentLink, PlayoutGuard, VoxEngineEmulator, sign_body

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000.0
SECRET = "s3cret"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def new_id() -> str:
    return str(uuid.uuid4())


def encode(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()


async def post(
    client: httpx.AsyncClient,
    url: str,
    payload: Any,
    *,
    headers: dict[str, str] | None = None,
    key: bool = True,
) -> dict[str, Any]:
    """POST like the agent (Content-Type, X-Idempotency-Key = id); return the JSON body."""
    body = encode(payload)
    sent = {"content-type": "application/json", **(headers or {})}
    if (
        key
        and isinstance(payload, dict)
        and isinstance(payload.get("id"), str)
        and payload["id"].isascii()
        and payload["id"].isprintable()
    ):
        sent.setdefault("x-idempotency-key", payload["id"])
    response = await client.post(url, content=body, headers=sent)
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture
async def emulator() -> AsyncIterator[VoxEngineEmulator]:
    async with VoxEngineEmulator() as emu:
        yield emu


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with lab_client() as c:  # by name, verified TLS, whatever the emulator's port
        yield c


# -- accepted, records, duplicates ------------------------------------------------------------


async def test_accepted_end_call_is_recorded(emulator: VoxEngineEmulator, client: httpx.AsyncClient) -> None:
    url = emulator.control_url("call-1")
    # The real shape: https://www-us-35-230.voximplant.com:<port>/request/<hex16>.<t>.<n>_<ip>/<HEX16>
    assert re.fullmatch(
        rf"{re.escape(emulator.origin)}/request/[0-9A-F]{{16}}\.[0-9]+\.[0-9]+_127\.0\.0\.1/[0-9A-F]{{16}}",
        url,
    )
    assert emulator.origin.startswith(f"https://{LAB_CONTROL_HOST}:")
    assert emulator.control_url("call-1") == url
    action_id = new_id()
    before = time.perf_counter()
    result = await post(client, url, {"id": action_id, "action": "end_call"}, headers={"X-Trace": "abc"})
    assert result == {"ok": True, "id": action_id, "action": "end_call"}

    (effect,) = await emulator.wait_for_effects(1, timeout=1)
    assert (effect.session, effect.action, effect.id, effect.summary) == (
        "call-1",
        "end_call",
        action_id,
        None,
    )
    (rec,) = emulator.requests
    assert before <= rec.time <= effect.time <= time.perf_counter()
    assert rec.method == "POST" and rec.path == "/request/call-1/***"
    assert url.rsplit("/", 1)[1] not in repr(rec)
    assert rec.headers["x-trace"] == "abc" and rec.headers["x-idempotency-key"] == action_id
    assert json.loads(rec.body) == {"id": action_id, "action": "end_call"}
    assert (rec.id, rec.attempt, rec.fault, rec.status, rec.response) == (action_id, 1, None, 200, result)


async def test_duplicate_has_first_result_and_no_second_effect(
    emulator: VoxEngineEmulator, client: httpx.AsyncClient
) -> None:
    url = emulator.control_url()
    action_id = new_id()
    payload = {"id": action_id, "action": "call_transfer", "summary": "wants billing"}
    first = await post(client, url, payload)
    again = await post(client, url, {**payload, "summary": "changed", "action": "end_call"})
    assert first == {"ok": True, "id": action_id, "action": "call_transfer"}
    assert again == {**first, "duplicate": True}
    (effect,) = await emulator.wait_for_effects(1, timeout=1)
    assert effect.summary == "wants billing"
    with pytest.raises(TimeoutError):
        await emulator.wait_for_effects(2, timeout=0.05)
    assert [r.attempt for r in emulator.requests] == [1, 2]


async def test_transfer_summary_defaults_to_empty(
    emulator: VoxEngineEmulator, client: httpx.AsyncClient
) -> None:
    await post(client, emulator.control_url(), {"id": "t1", "action": "call_transfer"})
    (effect,) = await emulator.wait_for_effects(1, timeout=1)
    assert effect.summary == ""


# -- refusals ----------------------------------------------------------------------------------


LONG_ID = "a" * 129


@pytest.mark.parametrize(
    ("payload", "headers", "code"),
    [
        (b"not json", {}, "bad_json"),
        (b"", {}, "bad_json"),
        (b"[1, 2]", {}, "bad_json"),
        (b'"end_call"', {}, "bad_json"),
        (b'{"id": "x", "action": "end_call", "n": NaN}', {}, "bad_json"),
        (b"\xff\xfe{}", {}, "bad_json"),
        (b"[" * 5000 + b"]" * 5000, {}, "bad_json"),
        ({"action": "end_call"}, {}, "bad_request"),
        ({"id": "", "action": "end_call"}, {}, "bad_request"),
        ({"id": "has space", "action": "end_call"}, {}, "bad_request"),
        ({"id": "x\n", "action": "end_call"}, {}, "bad_request"),
        ({"id": LONG_ID, "action": "end_call"}, {}, "bad_request"),
        ({"id": 42, "action": "end_call"}, {}, "bad_request"),
        ({"id": "a1", "action": 3}, {}, "bad_request"),
        ({"id": "a1"}, {}, "bad_request"),
        ({"id": "a1", "action": "call_transfer", "summary": 5}, {}, "bad_request"),
        ({"id": "a1", "action": "call_transfer", "summary": None}, {}, "bad_request"),
        ({"id": "a1", "action": "call_transfer", "summary": "x" * 2001}, {}, "bad_request"),
        ({"id": "a1", "action": "call_transfer", "summary": "😀" * 2001}, {}, "bad_request"),
        ({"id": "a1", "action": "dance", "summary": 5}, {}, "unknown_action"),
        ({"id": "café", "action": "end_call"}, {}, "bad_request"),
        ({"id": "a1", "action": "end_call"}, {"x-idempotency-key": "other"}, "bad_request"),
        ({"id": "a1", "action": "reboot"}, {}, "unknown_action"),
        ({"id": "a1", "action": "END_CALL"}, {}, "unknown_action"),
    ],
)
async def test_refusals(
    emulator: VoxEngineEmulator,
    client: httpx.AsyncClient,
    payload: Any,
    headers: dict[str, str],
    code: str,
) -> None:
    result = await post(client, emulator.control_url(), payload, headers=headers)
    assert result == {"ok": False, "error": code}
    assert emulator.effects == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_method_not_allowed(
    emulator: VoxEngineEmulator, client: httpx.AsyncClient, method: str
) -> None:
    response = await client.request(method, emulator.control_url())
    assert response.status_code == 200
    assert response.json() == {"ok": False, "error": "method_not_allowed"}
    assert emulator.requests[0].method == method


async def test_body_limit_is_16_kib(emulator: VoxEngineEmulator, client: httpx.AsyncClient) -> None:
    url = emulator.control_url()

    def padded(action_id: str, size: int) -> bytes:
        skeleton = {"id": action_id, "action": "end_call", "pad": ""}
        body = json.dumps({**skeleton, "pad": "x" * (size - len(json.dumps(skeleton)))}).encode()
        assert len(body) == size
        return body

    too_big = await post(client, url, padded("big", MAX_BODY_BYTES + 1))
    assert too_big == {"ok": False, "error": "body_too_large"}
    at_limit = await post(client, url, padded("fits", MAX_BODY_BYTES), headers={"x-idempotency-key": "fits"})
    assert at_limit == {"ok": True, "id": "fits", "action": "end_call"}
    assert {r.connection for r in emulator.requests} == {1}  # kept alive after a refusal


async def test_huge_body_is_refused_and_connection_closed(
    emulator: VoxEngineEmulator, client: httpx.AsyncClient
) -> None:
    response = await client.post(emulator.control_url(), content=b"x" * (3 * 1024 * 1024))
    assert response.json() == {"ok": False, "error": "body_too_large"}
    await post(client, emulator.control_url(), {"id": "after", "action": "end_call"})
    assert [r.connection for r in emulator.requests] == [1, 2]


async def test_summary_limit_counts_code_points(
    emulator: VoxEngineEmulator, client: httpx.AsyncClient
) -> None:
    url = emulator.control_url()
    result = await post(client, url, {"id": "t1", "action": "call_transfer", "summary": "😀" * 2000})
    assert result["ok"] is True
    emulator.transfer_failed()
    result = await post(client, url, {"id": "t2", "action": "call_transfer", "summary": "x" * 2000})
    assert result["ok"] is True


async def test_call_ended_after_end_call_and_hang_up(
    emulator: VoxEngineEmulator, client: httpx.AsyncClient
) -> None:
    url = emulator.control_url("a")
    await post(client, url, {"id": "e1", "action": "end_call"})
    assert await post(client, url, {"id": "e2", "action": "end_call"}) == {"ok": False, "error": "call_ended"}
    refused = await post(client, url, {"id": "t1", "action": "call_transfer"})
    assert refused == {"ok": False, "error": "call_ended"}
    duplicate = await post(client, url, {"id": "e1", "action": "end_call"})
    assert duplicate == {"ok": True, "id": "e1", "action": "end_call", "duplicate": True}

    other = emulator.control_url("b")
    assert other.rsplit("/", 1)[1] != url.rsplit("/", 1)[1]
    emulator.hang_up("b")
    assert await post(client, other, {"id": "e1", "action": "end_call"}) == {
        "ok": False,
        "error": "call_ended",
    }
    assert [e.session for e in emulator.effects] == ["a"]


async def test_transfer_in_progress(emulator: VoxEngineEmulator, client: httpx.AsyncClient) -> None:
    url = emulator.control_url()
    assert (await post(client, url, {"id": "t1", "action": "call_transfer"}))["ok"] is True
    second = await post(client, url, {"id": "t2", "action": "call_transfer"})
    assert second == {"ok": False, "error": "transfer_in_progress"}
    assert (await post(client, url, {"id": "t1", "action": "call_transfer"}))["duplicate"] is True
    emulator.transfer_failed()
    assert (await post(client, url, {"id": "t3", "action": "call_transfer"}))["ok"] is True
    assert (await post(client, url, {"id": "e1", "action": "end_call"}))["ok"] is True
    assert [e.id for e in emulator.effects] == ["t1", "t3", "e1"]


async def test_transfer_connected_ends_agent_control(
    emulator: VoxEngineEmulator, client: httpx.AsyncClient
) -> None:
    url = emulator.control_url()
    assert (await post(client, url, {"id": "t1", "action": "call_transfer"}))["ok"] is True
    emulator.transfer_connected()
    assert await post(client, url, {"id": "e1", "action": "end_call"}) == {"ok": False, "error": "call_ended"}


async def test_refusals_of_valid_ids_are_remembered(
    emulator: VoxEngineEmulator, client: httpx.AsyncClient
) -> None:
    url = emulator.control_url()
    assert await post(client, url, {"id": "u1", "action": "reboot"}) == {
        "ok": False,
        "error": "unknown_action",
    }
    again = await post(client, url, {"id": "u1", "action": "end_call"})
    assert again == {"ok": False, "error": "unknown_action", "duplicate": True}
    # A refusal without a valid id (or with a mismatching key) is not remembered.
    refused = await post(client, url, {"id": "k1", "action": "end_call"}, headers={"x-idempotency-key": "k2"})
    assert refused == {"ok": False, "error": "bad_request"}
    assert await post(client, url, {"id": "k1", "action": "end_call"}) == {
        "ok": True,
        "id": "k1",
        "action": "end_call",
    }
    assert [e.id for e in emulator.effects] == ["k1"]


async def test_idempotency_key_is_optional(emulator: VoxEngineEmulator, client: httpx.AsyncClient) -> None:
    result = await post(client, emulator.control_url(), {"id": "n1", "action": "end_call"}, key=False)
    assert result["ok"] is True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action_id=st.text(max_size=140))
async def test_id_syntax(emulator: VoxEngineEmulator, client: httpx.AsyncClient, action_id: str) -> None:
    emulator.hang_up("prop")  # every valid id then gets call_ended, and never a duplicate answer
    result = await post(
        client, emulator.control_url("prop"), {"id": action_id, "action": "end_call"}, key=False
    )
    valid = 1 <= len(action_id) <= 128 and all(c.isascii() and (c.isalnum() or c in "-_") for c in action_id)
    assert result["error"] == ("call_ended" if valid else "bad_request")


# -- signatures --------------------------------------------------------------------------------


@pytest.fixture
async def signed() -> AsyncIterator[VoxEngineEmulator]:
    async with VoxEngineEmulator(secret=SECRET, wall_clock=lambda: NOW) as emu:
        yield emu


def _mac_hex(body: bytes, t: str) -> str:
    return hmac.new(SECRET.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()


def body_of(action_id: str) -> bytes:
    return json.dumps({"id": action_id, "action": "end_call"}).encode()


@pytest.mark.parametrize(
    ("signature", "code"),
    [
        (lambda b: sign_body(SECRET, b, int(NOW)), None),
        (lambda b: sign_body(SECRET, b, int(NOW) - 300), None),
        (lambda b: sign_body(SECRET, b, int(NOW) + 300), None),
        (lambda b: sign_body(SECRET, b, int(NOW)).upper().replace("T=", "t=").replace("V1=", "v1="), None),
        (lambda b: sign_body(SECRET, b, int(NOW)) + ",v0=x", "bad_signature"),
        (lambda b: sign_body(SECRET, b, int(NOW)).replace(",", ", "), "bad_signature"),
        (lambda b: ",".join(reversed(sign_body(SECRET, b, int(NOW)).split(","))), "bad_signature"),
        (lambda b: sign_body(SECRET, b, int(NOW)).replace("v1=", "v2="), "bad_signature"),
        (lambda b: f"t={int(NOW)}," + sign_body(SECRET, b, int(NOW)), "bad_signature"),
        (lambda b: sign_body(SECRET, b, int(NOW)).replace("t=", "t=-"), "bad_signature"),
        (lambda b: sign_body(SECRET, b, int(NOW))[:-1], "bad_signature"),
        (lambda b: f"t=0{int(NOW)},v1={_mac_hex(b, f'0{int(NOW)}')}", None),  # MAC over t as sent
        (lambda b: f"t=0{int(NOW)},v1={_mac_hex(b, str(int(NOW)))}", "bad_signature"),
        (lambda b: "", "missing_signature"),
        (lambda b: None, "missing_signature"),
        (lambda b: sign_body("wrong", b, int(NOW)), "bad_signature"),
        (lambda b: sign_body(SECRET, b + b" ", int(NOW)), "bad_signature"),
        (lambda b: "garbage", "bad_signature"),
        (lambda b: sign_body(SECRET, b, int(NOW)).split(",")[1], "bad_signature"),
        (lambda b: sign_body(SECRET, b, int(NOW)).split(",")[0], "bad_signature"),
        (lambda b: sign_body(SECRET, b, int(NOW)).replace(f"t={int(NOW)}", f"t={NOW}"), "bad_signature"),
        (
            lambda b: sign_body(SECRET, b, int(NOW) - 1).replace(f"t={int(NOW) - 1}", f"t={int(NOW)}"),
            "bad_signature",
        ),
        (lambda b: sign_body(SECRET, b, int(NOW) - 301), "stale_signature"),
        (lambda b: sign_body(SECRET, b, int(NOW) + 301), "stale_signature"),
        (lambda b: sign_body("wrong", b, int(NOW) - 301), "bad_signature"),
    ],
)
async def test_signatures(
    signed: VoxEngineEmulator, client: httpx.AsyncClient, signature: Any, code: str | None
) -> None:
    body = body_of("sig1")
    value = signature(body)
    headers = {"x-idempotency-key": "sig1"} | ({} if value is None else {"x-vox-signature": value})
    result = await post(client, signed.control_url(), body, headers=headers)
    if code is None:
        assert result == {"ok": True, "id": "sig1", "action": "end_call"}
        assert len(signed.effects) == 1
    else:
        assert result == {"ok": False, "error": code}
        assert signed.effects == []


async def test_signature_checked_before_json(signed: VoxEngineEmulator, client: httpx.AsyncClient) -> None:
    assert await post(client, signed.control_url(), b"nope") == {"ok": False, "error": "missing_signature"}
    headers = {"x-vox-signature": sign_body(SECRET, b"nope", int(NOW))}
    assert await post(client, signed.control_url(), b"nope", headers=headers) == {
        "ok": False,
        "error": "bad_json",
    }


async def test_unsigned_refusal_is_not_remembered(
    signed: VoxEngineEmulator, client: httpx.AsyncClient
) -> None:
    body = body_of("r1")
    url = signed.control_url()
    assert (await post(client, url, body))["error"] == "missing_signature"
    headers = {"x-vox-signature": sign_body(SECRET, body, int(NOW))}
    assert await post(client, url, body, headers=headers) == {"ok": True, "id": "r1", "action": "end_call"}


async def test_stale_window_follows_the_wall_clock(client: httpx.AsyncClient) -> None:
    now = [NOW]
    async with VoxEngineEmulator(secret=SECRET, wall_clock=lambda: now[0]) as emu:
        body = body_of("w1")
        headers = {"x-vox-signature": sign_body(SECRET, body, int(NOW))}
        now[0] = NOW + 301
        assert (await post(client, emu.control_url(), body, headers=headers))["error"] == "stale_signature"
        now[0] = NOW + 300
        assert (await post(client, emu.control_url(), body, headers=headers))["ok"] is True


# -- paths and warm-ups --------------------------------------------------------------------------


async def test_unknown_paths_are_404(emulator: VoxEngineEmulator, client: httpx.AsyncClient) -> None:
    url = emulator.control_url("s1")
    other = emulator.control_url("s2")
    s1, token = url.rsplit("/", 2)[1:]
    s2 = other.rsplit("/", 2)[1]
    origin = emulator.origin
    for bad in [
        f"{origin}/request/{s1}/{token}x",
        f"{origin}/request/{s2}/{token}",
        f"{origin}/request/{s1}",
        f"{origin}/request/{s1}/{token}/more",
        f"{origin}/",
    ]:
        response = await client.post(bad, content=body_of("p1"))
        assert response.status_code == 404, bad
    for method in ["HEAD", "GET", "OPTIONS"]:
        assert (await client.request(method, f"{origin}/")).status_code == 404
    assert emulator.warmups == 3 and emulator.not_found == 5
    assert emulator.requests == [] and emulator.effects == []
    assert (await client.post(f"{url}?x=1", content=body_of("p1"))).json()["ok"] is True


# -- faults ------------------------------------------------------------------------------------


async def test_status_fault_then_retry_is_first_real(client: httpx.AsyncClient) -> None:
    async with VoxEngineEmulator(faults=FaultPlan(sequence=[Fault.http(503)])) as emu:
        url, body = emu.control_url(), body_of("f1")
        response = await client.post(url, content=body, headers={"x-idempotency-key": "f1"})
        assert response.status_code == 503
        assert emu.effects == []
        assert await post(client, url, body) == {"ok": True, "id": "f1", "action": "end_call"}
        assert [(r.attempt, r.status, r.fault) for r in emu.requests] == [
            (1, 503, Fault.http(503)),
            (2, 200, None),
        ]


async def test_429_with_retry_after(client: httpx.AsyncClient) -> None:
    async with VoxEngineEmulator(faults=FaultPlan(sequence=[Fault.http(429, retry_after_s=2)])) as emu:
        response = await client.post(emu.control_url(), content=body_of("f1"))
        assert response.status_code == 429
        assert response.headers["retry-after"] == "2"


async def test_slow_fault_answers_late_but_acts_on_arrival(client: httpx.AsyncClient) -> None:
    async with VoxEngineEmulator(faults=FaultPlan(sequence=[Fault.slow(0.3)])) as emu:
        started = time.perf_counter()
        result = await post(client, emu.control_url(), body_of("f1"))
        answered = time.perf_counter()
        assert result["ok"] is True
        assert answered - started >= 0.3
        (effect,) = emu.effects
        assert effect.time - started < 0.25


async def test_hang_fault_times_the_client_out(client: httpx.AsyncClient) -> None:
    async with VoxEngineEmulator(faults=FaultPlan(sequence=[Fault.hang()])) as emu:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(emu.control_url(), content=body_of("f1"), timeout=0.2)
        assert emu.requests[0].status is None and emu.effects == []
        assert (await post(client, emu.control_url(), body_of("f1")))["ok"] is True


async def test_hang_ends_promptly_when_the_emulator_closes(client: httpx.AsyncClient) -> None:
    errors: list[BaseException] = []
    failed = anyio.Event()

    async def call(url: str) -> None:
        try:
            await client.post(url, content=body_of("f1"), timeout=30)
        except httpx.HTTPError as exc:
            errors.append(exc)
        failed.set()

    tasks_before = asyncio.all_tasks()
    async with anyio.create_task_group() as tg:
        emu = VoxEngineEmulator(faults=FaultPlan(sequence=[Fault.hang()]))
        async with emu:
            tg.start_soon(call, emu.control_url())
            await emu.wait_for_requests(1, timeout=2)
            closing = time.perf_counter()
        with anyio.fail_after(2):
            await failed.wait()
    assert time.perf_counter() - closing < 1
    assert isinstance(errors[0], (httpx.RemoteProtocolError, httpx.ReadError))
    assert asyncio.all_tasks() <= tasks_before  # no orphans


async def test_errors_in_the_body_propagate_and_close(client: httpx.AsyncClient) -> None:
    tasks_before = asyncio.all_tasks()
    with pytest.raises(KeyError):
        async with VoxEngineEmulator() as emu:
            await post(client, emu.control_url(), body_of("b1"))
            raise KeyError("boom")
    assert asyncio.all_tasks() <= tasks_before
    with pytest.raises(httpx.ConnectError):
        await client.post(emu.control_url(), content=body_of("b2"))
    # an outer cancel scope ends the body (and a hanging request) promptly
    started = time.perf_counter()
    with anyio.move_on_after(0.2) as scope:
        async with VoxEngineEmulator(faults=FaultPlan(sequence=[Fault.hang()])) as emu:
            await client.post(emu.control_url(), content=body_of("b3"))
    assert scope.cancelled_caught and time.perf_counter() - started < 1
    assert asyncio.all_tasks() <= tasks_before


async def test_drop_fault_closes_without_response(client: httpx.AsyncClient) -> None:
    async with VoxEngineEmulator(faults=FaultPlan(sequence=[None, Fault.drop()])) as emu:
        url = emu.control_url()
        await post(client, url, {"id": "f0", "action": "call_transfer"})
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.post(url, content=body_of("f1"))
        assert await post(client, url, body_of("f1")) == {"ok": True, "id": "f1", "action": "end_call"}
        assert [r.connection for r in emu.requests] == [1, 1, 2]
        assert emu.requests[1].fault == Fault.drop() and emu.requests[1].status is None


async def test_non_json_fault(client: httpx.AsyncClient) -> None:
    async with VoxEngineEmulator(faults=FaultPlan(sequence=[Fault.non_json()])) as emu:
        response = await client.post(emu.control_url(), content=body_of("f1"))
        assert response.status_code == 200
        with pytest.raises(ValueError):
            response.json()
        assert emu.effects == [] and emu.requests[0].response is None


async def test_not_ok_fault(client: httpx.AsyncClient) -> None:
    async with VoxEngineEmulator(faults=FaultPlan(sequence=[Fault.not_ok()])) as emu:
        assert await post(client, emu.control_url(), body_of("f1")) == {"ok": False, "error": "injected"}
        assert emu.effects == []
        assert await post(client, emu.control_url(), body_of("f1")) == {
            "ok": True,
            "id": "f1",
            "action": "end_call",
        }


async def test_sequence_counts_control_requests_only(client: httpx.AsyncClient) -> None:
    plan = FaultPlan(sequence=[None, Fault.http(502), None, Fault.not_ok()])
    async with VoxEngineEmulator(faults=plan) as emu:
        statuses = []
        for i in range(5):
            await client.head(f"{emu.origin}/")  # warm-ups are not control requests
            response = await client.post(emu.control_url(), content=body_of(f"s{i}"))
            statuses.append(
                (response.status_code, response.json().get("ok") if response.status_code == 200 else None)
            )
        assert statuses == [(200, True), (502, None), (200, False), (200, False), (200, False)]
        # the third is call_ended (after the first end_call), the fourth injected, the fifth call_ended
        assert [r.response for r in emu.requests][2:] == [
            {"ok": False, "error": "call_ended"},
            {"ok": False, "error": "injected"},
            {"ok": False, "error": "call_ended"},
        ]


async def test_per_attempt_sequence(client: httpx.AsyncClient) -> None:
    plan = FaultPlan(sequence=[Fault.drop(), Fault.http(503)], per_attempt=True)
    async with VoxEngineEmulator(faults=plan) as emu:
        for action_id, action in [("t1", "call_transfer"), ("e1", "end_call")]:
            url = emu.control_url()
            payload = {"id": action_id, "action": action}
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                await client.post(url, json=payload)
            assert (await client.post(url, json=payload)).status_code == 503
            assert (await post(client, url, payload))["ok"] is True
        assert [(r.id, r.attempt) for r in emu.requests] == [
            ("t1", 1),
            ("t1", 2),
            ("t1", 3),
            ("e1", 1),
            ("e1", 2),
            ("e1", 3),
        ]
        assert [e.id for e in emu.effects] == ["t1", "e1"]


async def outcomes(client: httpx.AsyncClient, plan: FaultPlan, n: int) -> list[str]:
    async with VoxEngineEmulator(faults=plan) as emu:
        for i in range(n):
            try:
                await client.post(emu.control_url(), content=body_of(f"r{i}"), timeout=0.5)
            except httpx.HTTPError:
                pass
        return [r.fault.kind if r.fault else "-" for r in emu.requests]


async def test_rates_are_seeded_and_reproducible(client: httpx.AsyncClient) -> None:
    plan = FaultPlan(rates={"status": 0.2, "drop": 0.2, "not_ok": 0.2, "non_json": 0.1}, seed=7)
    first = await outcomes(client, plan, 60)
    assert first == await outcomes(client, plan, 60)
    assert first != await outcomes(client, FaultPlan(rates=plan.rates, seed=8), 60)
    counts = {kind: first.count(kind) for kind in ["status", "drop", "not_ok", "non_json", "-"]}
    assert all(counts.values()), counts  # every kind (and some clean requests) drawn


async def test_rate_max_attempt_lets_retries_through(client: httpx.AsyncClient) -> None:
    plan = FaultPlan(rates={"status": 1.0}, rate_max_attempt=1, templates={"status": Fault.http(500)})
    async with VoxEngineEmulator(faults=plan) as emu:
        url = emu.control_url()
        assert (await client.post(url, content=body_of("m1"))).status_code == 500
        assert (await post(client, url, body_of("m1")))["ok"] is True


def test_plan_validation() -> None:
    with pytest.raises(ValueError):
        FaultPlan(rates={"status": 0.7, "drop": 0.5})
    with pytest.raises(ValueError):
        FaultPlan(rates={"explode": 0.1})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        Fault("explode")  # type: ignore[arg-type]


# -- connections ---------------------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection(
    emulator: VoxEngineEmulator, client: httpx.AsyncClient
) -> None:
    await client.head(f"{emulator.origin}/")  # warm-up opens the pooled connection
    for i in range(5):
        await post(client, emulator.control_url(f"k{i}"), {"id": f"k{i}", "action": "end_call"})
    assert emulator.connections == 1
    assert {r.connection for r in emulator.requests} == {1}
    assert len(emulator.effects) == 5


async def test_fresh_clients_open_fresh_connections(emulator: VoxEngineEmulator) -> None:
    for i in range(3):
        async with lab_client() as c:
            await post(c, emulator.control_url(), {"id": f"c{i}", "action": "call_transfer"})
        emulator.transfer_failed()
    assert [r.connection for r in emulator.requests] == [1, 2, 3]


async def test_sessions_before_start_and_names() -> None:
    emu = VoxEngineEmulator()
    emu.hang_up("early")  # scenario-side state may be set up before serving
    with pytest.raises(RuntimeError):
        emu.control_url("early")
    async with emu, lab_client() as c:
        assert await post(c, emu.control_url("early"), body_of("e1")) == {"ok": False, "error": "call_ended"}
        for bad in ["", "a/b", "a b", "a?b"]:
            with pytest.raises(ValueError):
                emu.control_url(bad)


async def test_wait_for_requests(emulator: VoxEngineEmulator, client: httpx.AsyncClient) -> None:
    with pytest.raises(TimeoutError):
        await emulator.wait_for_requests(1, timeout=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(post, client, emulator.control_url(), {"id": "w1", "action": "end_call"})
        (rec,) = await emulator.wait_for_requests(1, timeout=2)
    assert rec.id == "w1"


async def test_it_serves_verified_tls_under_a_voxengine_name_only(client: httpx.AsyncClient) -> None:
    async with VoxEngineEmulator() as emu:
        await client.head(f"{emu.origin}/")
        for i in range(3):
            result = await post(client, emu.control_url(), {"id": f"x{i}", "action": "call_transfer"})
            assert result["ok"] is True
            emu.transfer_failed()
        assert emu.connections == 1 and emu.warmups == 1
        assert emu.server_names == [LAB_CONTROL_HOST]
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the lab CA
            async with httpx.AsyncClient(verify=ssl.create_default_context()) as untrusted:
                await untrusted.post(
                    emu.control_url().replace(emu.origin, f"https://127.0.0.1:{emu.pin.port}")
                )
        with pytest.raises(httpx.HTTPError):  # plain HTTP
            async with httpx.AsyncClient() as plain:
                await plain.post(f"http://127.0.0.1:{emu.pin.port}/", content=body_of("u1"), timeout=1)
        assert len(emu.requests) == 3


# -- the shared contract cases (voxengine/contract/control_cases.json) ----------------------------

CASES_PATH = Path(__file__).resolve().parents[2] / "voxengine" / "contract" / "control_cases.json"
CASES: dict[str, Any] = json.loads(CASES_PATH.read_text(encoding="utf-8"))
EFFECT_KINDS = {"end_call": "hangup", "call_transfer": "transfer"}


def build_request(request: dict[str, Any]) -> tuple[str, bytes, dict[str, str]]:
    """A case step's HTTP request, exactly as voxengine/tests/contract_replay.js builds it."""
    if "json" in request:
        text = json.dumps(request["json"], ensure_ascii=False, separators=(",", ":"))
    else:
        text = request["body"]
    body = text.encode("utf-8")
    if "pad_to_bytes" in request:
        assert len(body) <= request["pad_to_bytes"]
        body += b" " * (request["pad_to_bytes"] - len(body))
    headers = dict(request.get("headers", {}))
    if "sign" in request:
        sign = request["sign"]
        t = str(CASES["now"] + sign.get("t_offset", 0))
        signed = sign["body"].encode("utf-8") if "body" in sign else body
        mac = hmac.new(
            sign.get("secret", CASES["secret"]).encode(), t.encode() + b"." + signed, hashlib.sha256
        )
        headers["X-Vox-Signature"] = f"t={t},v1={mac.hexdigest()}"
    elif "signature" in request:
        headers["X-Vox-Signature"] = request["signature"]
    return request.get("method", "POST"), body, headers


@pytest.mark.parametrize("case", CASES["cases"], ids=[c["name"] for c in CASES["cases"]])
async def test_contract_case(client: httpx.AsyncClient, case: dict[str, Any]) -> None:
    secret = CASES["secret"] if case["signing"] else None
    async with VoxEngineEmulator(secret=secret, wall_clock=lambda: float(CASES["now"])) as emu:
        url = emu.control_url("case")
        for number, step in enumerate(case["steps"], 1):
            method, body, headers = build_request(step["request"])
            effects_before = len(emu.effects)
            response = await client.request(method, url, content=body, headers=headers)
            assert response.status_code == 200
            actual = response.json()
            expect = step["expect"]
            for key, value in expect["response"].items():
                assert actual.get(key) == value, (number, key, actual)
            if "duplicate" not in expect["response"]:
                assert actual.get("duplicate") is not True, (number, actual)
            kinds = sorted({EFFECT_KINDS[e.action] for e in emu.effects[effects_before:]})
            assert kinds == sorted(set(expect["effects"])), (number, kinds)


# -- what VoxEngine does around the contract -------------------------------------------------------


async def test_the_contract_sees_only_x_headers(client: httpx.AsyncClient) -> None:
    # voxengine.d.ts _HttpRequestEvent.headers: "the ones starting with X-".
    async with VoxEngineEmulator(secret=SECRET, wall_clock=lambda: NOW) as emu:
        body = encode({"id": "h1", "action": "end_call"})
        signature = sign_body(SECRET, body, int(NOW))
        unseen = await post(client, emu.control_url(), body, headers={"Vox-Signature": signature})
        seen = await post(client, emu.control_url(), body, headers={"X-Vox-Signature": signature})
    assert unseen == {"ok": False, "error": "missing_signature"}
    assert seen == {"ok": True, "id": "h1", "action": "end_call"}
    assert emu.requests[0].headers["vox-signature"] == signature  # recorded, not shown to the scenario


async def test_a_hang_up_terminates_the_session_after_the_grace(client: httpx.AsyncClient) -> None:
    async with VoxEngineEmulator(terminate_grace_s=0.3) as emu:
        url = emu.control_url()
        accepted_at = anyio.current_time()
        assert (await post(client, url, {"id": "e1", "action": "end_call"}))["ok"] is True
        assert await post(client, url, {"id": "e2", "action": "end_call"}) == {
            "ok": False,
            "error": "call_ended",
        }
        await emu.wait_terminated(timeout=5)
        assert anyio.current_time() - accepted_at >= 0.3 - 0.01
        with pytest.raises(httpx.ConnectError):  # the only session is gone: nothing listens
            await client.post(url, content=body_of("e3"))
    assert [r.id for r in emu.requests] == ["e1", "e2"]


async def test_a_terminated_session_answers_nothing_while_others_go_on(client: httpx.AsyncClient) -> None:
    async with VoxEngineEmulator(terminate_grace_s=0.1) as emu:
        gone, alive = emu.control_url("gone"), emu.control_url("alive")
        emu.hang_up("gone")
        await emu.wait_terminated("gone", timeout=5)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(gone, content=body_of("g1"))
        assert (await post(client, alive, {"id": "a1", "action": "call_transfer"}))["ok"] is True
    assert emu.unanswered == 1 and [r.session for r in emu.requests] == ["alive"]


async def test_an_overrun_handler_is_cut_at_the_callback_limit_without_effect(
    client: httpx.AsyncClient,
) -> None:
    faults = FaultPlan(sequence=[Fault.overrun()])
    async with VoxEngineEmulator(faults=faults, callback_limit_s=0.2) as emu:
        started = anyio.current_time()
        response = await client.post(emu.control_url(), content=body_of("o1"))
        elapsed = anyio.current_time() - started
        assert response.status_code == 500 and emu.effects == []
        assert await post(client, emu.control_url(), body_of("o1")) == {
            "ok": True,
            "id": "o1",
            "action": "end_call",
        }
    assert 0.2 - 0.01 <= elapsed < 2.0
    assert [e.id for e in emu.effects] == ["o1"]


# ---- the hang-up chain (docs/control-contract.md "The hang-up chain") ----


class ChainAgent:
    """The agent's side as the emulated scenario reaches it: outcome events, and a close."""

    def __init__(self) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []

    async def custom(self, metadata: dict[str, Any]) -> None:
        self.events.append((time.perf_counter(), metadata))

    async def close(self) -> None:
        pass


async def post_end_call(emu: VoxEngineEmulator, action_id: str = "bye-1") -> None:
    async with lab_client() as client:
        response = await client.post(
            emu.control_url(),
            json={"id": action_id, "action": "end_call"},
            headers={"x-idempotency-key": action_id},
        )
    assert response.json()["ok"] is True


async def test_the_guard_holds_the_hang_up_until_the_agents_audio_ended_at_voxengine() -> None:
    agent = ChainAgent()
    async with VoxEngineEmulator(playout_lag_s=0.15, guard=PlayoutGuard(on=True, max_s=3.0)) as emu:
        emu.link_agent("s1", AgentLink(custom=agent.custom, close=agent.close))
        stopped = time.perf_counter()
        emu.agent_audio("s1", started_at=stopped - 1.0, stopped_at=stopped)  # the harness's goodbye
        await post_end_call(emu)
        [hang_up] = await emu.wait_for_hang_ups(1, timeout=5)
    ended = stopped + 0.15 + 1.0  # audio end at VoxEngine + the connector's 1 s of silence
    assert hang_up.why == "end_call" and hang_up.time >= ended - 0.01
    assert hang_up.playout_offset_ms is not None and 1000 <= hang_up.playout_offset_ms < 1300
    [(told_at, completed)] = agent.events
    assert told_at <= hang_up.time + 0.01  # just before the hang-up, while the agent is connected
    assert completed == {
        "vox_event": "action_outcome", "id": "bye-1", "action": "end_call", "status": "completed",
        "playout_offset_ms": hang_up.playout_offset_ms,
    }  # fmt: skip
    assert emu.media().playout(hang_up.time).cut_s == 0.0  # nothing of the goodbye was cut


async def test_without_the_guard_the_hang_up_is_at_once_and_its_offset_unknown() -> None:
    agent = ChainAgent()
    async with VoxEngineEmulator(playout_lag_s=0.4, guard=PlayoutGuard(on=False)) as emu:
        emu.link_agent("s1", AgentLink(custom=agent.custom, close=agent.close))
        stopped = time.perf_counter()
        emu.agent_audio("s1", started_at=stopped - 1.0, stopped_at=stopped)
        await post_end_call(emu)
        [hang_up] = await emu.wait_for_hang_ups(1, timeout=5)
    assert hang_up.time - hang_up.requested_at < 0.2
    assert hang_up.playout_offset_ms is None  # still playing as far as VoxEngine could tell
    assert agent.events[0][1]["playout_offset_ms"] is None  # null, never a guess
    cut = emu.media().playout(hang_up.time).cut_s
    assert cut is not None and cut > 0.1  # the buffered end of the goodbye never played


async def test_the_guard_is_bounded_when_the_audio_never_ends() -> None:
    async with VoxEngineEmulator(guard=PlayoutGuard(on=True, max_s=0.3)) as emu:
        emu.agent_audio("s1", started_at=time.perf_counter())
        await post_end_call(emu)
        [hang_up] = await emu.wait_for_hang_ups(1, timeout=5)
    assert 0.3 <= hang_up.time - hang_up.requested_at < 1.0
    assert hang_up.playout_offset_ms is None


async def test_a_normal_close_keeps_the_caller_for_the_hang_up_request() -> None:
    async with VoxEngineEmulator(agent_close_grace_s=3.0) as emu:
        emu.agent_closed("s1", 1000)  # Cartesia: "call ended by agent"
        assert not emu.session_ended("s1")
        await post_end_call(emu)  # performed although the agent's socket is gone
        [hang_up] = await emu.wait_for_hang_ups(1, timeout=5)
    assert hang_up.why == "end_call" and emu.custom_events == []  # nobody to tell


async def test_a_normal_close_with_no_hang_up_request_strands_nobody() -> None:
    async with VoxEngineEmulator(agent_close_grace_s=0.3) as emu:
        emu.agent_closed("s1", 1000)
        [hang_up] = await emu.wait_for_hang_ups(1, timeout=5)
    assert hang_up.why == "agent_closed" and 0.3 <= hang_up.time - hang_up.requested_at < 1.0


async def test_an_abnormal_close_ends_the_call_at_once() -> None:
    async with VoxEngineEmulator() as emu:
        emu.agent_closed("s1", 1006)
        assert emu.session_ended("s1")
        [hang_up] = emu.hang_ups
    assert hang_up.why == "agent_lost"


async def test_named_destinations_fall_back_and_keys_go_to_the_right_leg() -> None:
    # Issue #18: sales is busy, support answers; AMD listens before the whisper; the agent's key
    # goes to the target's leg while it is answered and not bridged, else to the caller's.

    sent: list[dict[str, Any]] = []
    keys: list[str] = []
    second_rings, connected = anyio.Event(), anyio.Event()

    async def custom(metadata: dict[str, Any]) -> None:
        sent.append(metadata)
        if metadata["status"] == "ringing" and metadata["attempt"] == 2:
            second_rings.set()
        if metadata["status"] == "connected":
            connected.set()

    async def dtmf(key: str) -> None:
        keys.append(key)

    async def close() -> None:
        pass

    phones = [Destination("sales", "busy", fallback=("support",)), Destination("support", "human")]
    pace = Pace(ring_s=0.1, answer_s=0.3, amd_s=0.4, whisper_s=0.3)
    async with VoxEngineEmulator(destinations=phones, pace=pace) as emu, lab_client() as client:
        emu.link_agent("s1", AgentLink(custom=custom, close=close, dtmf=dtmf))
        url = emu.control_url("s1")
        assert await emu.caller_presses("5#") == 2
        emu.agent_dtmf("1")
        emu.agent_dtmf("x")  # not a DTMF digit: not played
        unknown = {"id": "t0", "action": "call_transfer", "destination": "billing"}
        response = await client.post(url, json=unknown)
        assert response.json() == {"ok": False, "error": "unknown_destination"}
        body = {"id": "t1", "action": "call_transfer", "summary": "quote", "destination": "sales"}
        assert (await client.post(url, json=body)).json()["ok"] is True
        with anyio.fail_after(5):
            await second_rings.wait()
        # support's script (Pace, after its dial): rings 0.1, answers 0.3, judged human 0.7.
        await anyio.sleep_until(anyio.current_time() + 0.4)  # AMD is listening on its leg
        assert emu.transfers[-1].phase == "detecting"
        emu.agent_dtmf("2")
        with anyio.fail_after(5):
            await connected.wait()
    assert keys == ["5", "#"]
    assert [(t.leg, t.key) for t in emu.tones] == [("caller", "1"), ("target", "2")]
    assert [(m["status"], m["destination"], m["attempt"]) for m in sent] == [
        ("ringing", "sales", 1),
        ("attempt_failed", "sales", 1),
        ("ringing", "support", 2),
        ("connected", "support", 2),
    ]
    assert sent[1]["reason"] == "busy" and sent[3]["amd"] == "human"
    assert [p.destination for p in emu.transfers] == ["sales", "support"]


def test_bad_transfer_destinations_are_one_log_line_and_left_out(caplog: pytest.LogCaptureFixture) -> None:
    """TRANSFER_DESTINATIONS as scenario.js `parseDestinations` reads it: bad entries left out,
    bad fields ignored, every problem in one line; not JSON at all is no destinations."""
    raw = json.dumps(
        {
            "sales": {"to": "+15550001001", "caller_id": "555", "extension": "12w3", "fallback": ["nowhere"]},
            "pbx": "sip:desk@pbx.example.org",
            "bad": {"to": "5550001001"},
            "Bad Name": "+15550001002",
        }
    )
    with caplog.at_level("WARNING", logger="lab.telephony"):
        parsed = parse_destinations(raw, {"sales": "busy"})
        assert parse_destinations('{"sales": +1555', {}) == []
    assert [(d.name, d.to, d.caller_id, d.extension, d.behaviour) for d in parsed] == [
        ("sales", "+15550001001", None, "12w3", "busy"),
        ("pbx", "sip:desk@pbx.example.org", None, "", "silent"),
    ]
    first, second = (r.getMessage() for r in caplog.records)
    for problem in ("'bad' left out", "'Bad Name' left out", "caller_id", "fallback 'nowhere'"):
        assert problem in first and "\n" not in first
    assert "not a JSON object" in second
