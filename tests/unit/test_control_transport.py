"""The connection layer under the control client (agent/control_transport.py), over real TLS on
loopback: a name is resolved once per connection, every address is checked, the connection goes
to the checked address with the name as SNI and Host, and certificate failures are final."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import anyio
import httpcore
import httpx
import pytest

from agent.actions import CALL_TRANSFER, END_CALL, ControlAction
from agent.control_transport import ControlConnectError, ControlNetwork, make_control_client, system_resolver
from agent.control_url import parse_control_url
from agent.retry_policy import RetryPolicy
from agent.voxengine_client import Delivery, VoxEngineClient
from lab.faults import Fault, FaultPlan
from lab.tls import LAB_CONTROL_HOST, LabCa, lab_ca
from lab.voxengine_emulator import VoxEngineEmulator

pytestmark = pytest.mark.anyio

QUICK = RetryPolicy(deadline_s=1.5, attempt_timeout_s=0.5, backoff_initial_s=0.02, backoff_max_s=0.05)


class RecordingResolver:
    """A stand-in for DNS: answers `answers` in turn (the last one repeats), records each lookup."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.lookups: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append((host, port))
        return self.answers[min(len(self.lookups), len(self.answers)) - 1]


async def deliver_through(
    emulator: VoxEngineEmulator,
    network: ControlNetwork,
    resolver: RecordingResolver | None = None,
    action: ControlAction | None = None,
) -> Delivery:
    target = parse_control_url(emulator.control_url(), allow_local=network.allow_local)
    options = {"resolver": resolver} if resolver is not None else {}
    async with make_control_client(network, **options) as http:
        client = VoxEngineClient(http, retry=QUICK)
        await client.warm(target)
        return await client.deliver(target, action or ControlAction(END_CALL))


async def test_a_pinned_name_connects_to_the_pinned_address_with_the_name_as_sni_and_host() -> None:
    async with VoxEngineEmulator() as emulator:
        result = await deliver_through(emulator, emulator.network)
        port = emulator.pin.port
    assert result == Delivery(True, "accepted", 1)
    [request] = emulator.requests
    assert request.headers["host"] == f"{LAB_CONTROL_HOST}:{port}"
    assert emulator.server_names == [LAB_CONTROL_HOST]  # one connection: warm-up and POST share it
    assert emulator.connections == 1 and emulator.warmups == 1


async def test_a_name_is_resolved_once_per_connection_and_the_checked_address_is_used() -> None:
    async with VoxEngineEmulator() as emulator:
        resolver = RecordingResolver(["127.0.0.1"])
        network = dataclasses.replace(emulator.network, resolve=())  # DNS (the stand-in), no pin
        result = await deliver_through(emulator, network, resolver)
        port = emulator.pin.port
    assert result.accepted
    assert resolver.lookups == [(LAB_CONTROL_HOST, port)]  # the warm-up's connection, reused by the POST


async def test_a_name_resolving_to_a_local_address_is_refused_outside_labs_and_never_connected() -> None:
    for answer in (["127.0.0.1"], ["8.8.4.4", "10.0.0.7"], ["::ffff:127.0.0.1"], ["169.254.169.254"]):
        async with VoxEngineEmulator() as emulator:
            resolver = RecordingResolver(answer)
            production = dataclasses.replace(emulator.network, allow_local=False, resolve=())
            result = await deliver_through(emulator, production, resolver)
        assert result == Delivery(False, "local_address_not_allowed", 1), answer  # final, not retried
        assert emulator.connections == 0, answer
        assert len(resolver.lookups) == 2  # the warm-up's attempt and the POST's, each refused


async def test_a_pin_is_ignored_outside_labs() -> None:
    async with VoxEngineEmulator() as emulator:
        resolver = RecordingResolver([])  # DNS knows no such name
        production = dataclasses.replace(emulator.network, allow_local=False)  # pin still listed
        result = await deliver_through(emulator, production, resolver)
    assert not result.accepted and result.reason == "deadline_exceeded:dns_error"
    assert resolver.lookups and emulator.connections == 0


async def test_a_certificate_for_another_name_fails_once_with_tls_error() -> None:
    other_name = lab_ca().server_context(("www-ru-52-18.voximplant.com",))
    async with VoxEngineEmulator(tls=other_name) as emulator:
        result = await deliver_through(emulator, emulator.network, action=ControlAction(CALL_TRANSFER))
    assert result == Delivery(False, "tls_error", 1)
    assert emulator.requests == [] and emulator.effects == []


async def test_a_certificate_from_an_untrusted_authority_fails_once_with_tls_error(tmp_path: Path) -> None:
    stranger = LabCa.create(tmp_path, name="not the lab CA")
    async with VoxEngineEmulator(tls=stranger.server_context()) as emulator:
        result = await deliver_through(emulator, emulator.network)
    assert result == Delivery(False, "tls_error", 1)
    assert emulator.requests == []


async def test_the_trust_store_is_the_configured_one_and_proxy_variables_are_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A proxy would see the secret path; the client must never use one, whatever the environment.
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    async with VoxEngineEmulator() as emulator:
        without_lab_ca = dataclasses.replace(emulator.network, ssl_cert_file=None)  # certifi only
        refused = await deliver_through(emulator, without_lab_ca)
        accepted = await deliver_through(emulator, emulator.network)
    assert refused == Delivery(False, "tls_error", 1)
    assert accepted.accepted


async def test_a_resolver_that_hangs_costs_one_attempt_timeout_and_is_retried() -> None:
    class Hanging:
        calls = 0

        async def __call__(self, host: str, port: int) -> list[str]:
            Hanging.calls += 1
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

    async with VoxEngineEmulator() as emulator:
        target = parse_control_url(emulator.control_url())
        network = dataclasses.replace(emulator.network, resolve=())
        async with make_control_client(network, resolver=Hanging()) as http:
            started = anyio.current_time()
            result = await VoxEngineClient(http, retry=QUICK).deliver(target, ControlAction(END_CALL))
            elapsed = anyio.current_time() - started
    assert not result.accepted and result.reason.startswith("deadline_exceeded")
    assert Hanging.calls >= 2 and elapsed <= QUICK.deadline_s + 0.5


async def test_the_default_resolver_is_the_systems() -> None:
    # A name from /etc/hosts resolves without any DNS server; addresses come back once each.
    addresses = await system_resolver("localhost", 443)
    assert {"127.0.0.1", "::1"} & set(addresses)
    assert len(addresses) == len(set(addresses))


@pytest.mark.parametrize(
    ("fault", "httpx_error", "httpcore_error"),
    [
        (Fault.drop(), httpx.RemoteProtocolError, httpcore.RemoteProtocolError),
        (Fault.hang(), httpx.ReadTimeout, httpcore.ReadTimeout),
    ],
    ids=["drop", "hang"],
)
async def test_transport_failures_are_httpx_errors_caused_by_httpcore_s(
    fault: Fault, httpx_error: type[httpx.TransportError], httpcore_error: type[Exception]
) -> None:
    # The mapping httpx's own transport does (retry_policy classifies by these types and causes).
    async with VoxEngineEmulator(faults=FaultPlan(sequence=(fault,))) as emulator:
        async with make_control_client(emulator.network) as http:
            with pytest.raises(httpx_error) as raised:
                await http.post(emulator.control_url(), content=b"{}", timeout=0.3)
    assert type(raised.value) is httpx_error and isinstance(raised.value.__cause__, httpcore_error)


async def test_a_refused_connection_is_an_httpx_connect_error_caused_by_the_layer_s_refusal() -> None:
    async with VoxEngineEmulator() as emulator:
        production = dataclasses.replace(emulator.network, allow_local=False, resolve=())
        async with make_control_client(production, resolver=RecordingResolver(["127.0.0.1"])) as http:
            with pytest.raises(httpx.ConnectError) as raised:
                await http.post(emulator.control_url(), content=b"{}")
        assert emulator.connections == 0
    cause = raised.value.__cause__
    assert isinstance(cause, ControlConnectError) and cause.reason == "local_address_not_allowed"
