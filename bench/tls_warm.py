"""Section 3, warm connection: a flush over TLS on loopback, to the emulator by its
VoxEngine-shaped name, with our pooled client warmed when the call started
(`VoxEngineClient.warm`, then `deliver`), against what the published example does: a new
`httpx.AsyncClient` per POST, which builds its SSL context (the CA bundle) and does the TCP and
TLS handshakes before the request can leave.

The fresh client is built as httpx builds it by default (`ssl.create_default_context` over
certifi's bundle), plus the lab's throwaway CA so the handshake can succeed, over the same
connection layer (`GuardedNetworkBackend`, so it reaches the lab host by name). The two kinds
alternate, sample by sample, so they share the machine's noise.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

import anyio
import certifi
import httpx

from agent.actions import CALL_TRANSFER, ControlAction
from agent.control_transport import ControlNetwork, GuardedTransport, make_control_client
from agent.control_url import ControlTarget, parse_control_url
from agent.voxengine_client import VoxEngineClient
from bench.progress import Progress
from bench.stats import Summary, summarize
from lab.voxengine_emulator import VoxEngineEmulator

SECTION = "tls"
PUBLISHED_TIMEOUT_S = 3.0
CONFIRMATION_GAP_S = 0.05  # between the call's warm-up and its flush


@dataclass(frozen=True)
class Flush:
    arrived_s: float  # flush start → the POST's arrival at the emulator
    done_s: float  # flush start → the answer read by the client
    ok: bool


@dataclass(frozen=True)
class TlsResult:
    warm: tuple[Flush, ...]
    fresh: tuple[Flush, ...]

    def arrival(self, kind: str) -> Summary | None:
        return summarize([f.arrived_s for f in getattr(self, kind) if f.ok])

    def done(self, kind: str) -> Summary | None:
        return summarize([f.done_s for f in getattr(self, kind) if f.ok])

    def failures(self, kind: str) -> int:
        return sum(1 for f in getattr(self, kind) if not f.ok)


def fresh_client(network: ControlNetwork) -> httpx.AsyncClient:
    """A client as the published example builds one per POST: the SSL context httpx builds for
    `verify=True` (certifi's bundle), plus the lab's CA, on our connection layer."""
    context = ssl.create_default_context(cafile=certifi.where())
    context.load_verify_locations(cafile=network.ssl_cert_file)
    transport = GuardedTransport(network, tls=context)
    return httpx.AsyncClient(transport=transport, timeout=PUBLISHED_TIMEOUT_S, trust_env=False)


def _arrival(emulator: VoxEngineEmulator, action_id: str) -> float | None:
    return next((r.time for r in reversed(emulator.requests) if r.id == action_id), None)


async def _warm_flush(client: VoxEngineClient, target: ControlTarget, emulator: VoxEngineEmulator) -> Flush:
    await client.warm(target)  # the call starts
    await anyio.sleep(CONFIRMATION_GAP_S)  # the confirmation plays
    action = ControlAction(CALL_TRANSFER, {"summary": "bench"})
    start = time.perf_counter()
    delivery = await client.deliver(target, action)
    done = time.perf_counter()
    arrived = _arrival(emulator, action.id)
    return Flush((arrived or done) - start, done - start, delivery.accepted and arrived is not None)


async def _fresh_flush(target: ControlTarget, emulator: VoxEngineEmulator) -> Flush:
    await anyio.sleep(CONFIRMATION_GAP_S)
    action = ControlAction(CALL_TRANSFER, {"summary": "bench"})
    start = time.perf_counter()
    ok = False
    try:
        async with fresh_client(emulator.network) as http:
            response = await http.post(target.url, json=action.body())
            ok = response.status_code == 200 and response.json().get("ok") is True
    except httpx.HTTPError:
        pass
    done = time.perf_counter()
    arrived = _arrival(emulator, action.id)
    return Flush((arrived or done) - start, done - start, ok and arrived is not None)


async def run_tls(samples: int, progress: Progress) -> TlsResult:
    warm: list[Flush] = []
    fresh: list[Flush] = []
    async with VoxEngineEmulator() as emulator:
        network = emulator.network
        http = make_control_client(network)
        client = VoxEngineClient(http)
        try:
            for i in range(samples + 1):  # the first pair warms both paths up and is dropped
                # a session each: a second transfer in one session would be refused
                ours = parse_control_url(emulator.control_url(f"tls-warm-{i}"), allow_local=True)
                theirs = parse_control_url(emulator.control_url(f"tls-fresh-{i}"), allow_local=True)
                pair = (
                    await _warm_flush(client, ours, emulator),
                    await _fresh_flush(theirs, emulator),
                )
                if i:
                    warm.append(pair[0])
                    fresh.append(pair[1])
        finally:
            await http.aclose()
    result = TlsResult(tuple(warm), tuple(fresh))
    progress.say(SECTION, f"warm {result.arrival('warm')}; fresh {result.arrival('fresh')}")
    return result
