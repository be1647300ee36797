"""Hostile control URLs: refused before any connection, and the call goes on.

`parse_control_url` (see `TelephonyAgentApp._control_target`) refuses bad shapes, local IP
literals (IPv6 forms embedding a local IPv4 included) and every host name outside the allow-list
(`voximplant.com` and VOX_CONTROL_ALLOWED_HOSTS). Numeric IPv4 spellings that are not dotted
quads (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`) are names to `urlsplit` and `ipaddress`, so
they are refused as names. A name *on* the allow-list is resolved by our own connection layer,
once per connection, and refused when any address is local; the connection goes to the checked
address, so a name that answers a public address first and 127.0.0.1 next (DNS rebinding) never
reaches 127.0.0.1. These tests prove "no connection" with the `connect_guard` fixture (every
connect of this process recorded, anything but 127.0.0.1 refused before it leaves, no DNS server
asked) and a real listener on 127.0.0.1 that counts the connections it accepts.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from line.events import AgentTurnEnded, AgentTurnStarted

from agent import prompt
from agent.actions import CALL_TRANSFER
from agent.call_control import CallControl
from agent.control_transport import make_control_client
from agent.control_url import InvalidControlUrl, parse_control_url
from agent.retry_policy import RetryPolicy
from agent.settings import Settings
from agent.voxengine_client import VoxEngineClient
from lab.call_lab import CallLab
from lab.tls import LAB_CONTROL_HOST
from lab.tts_model import TtsModel
from tests.hardening._support import (
    CHAT_REPLY,
    ConnectGuard,
    CountingListener,
    HostileControlServer,
    captured_logs,
    tool_agent,
)

pytestmark = pytest.mark.anyio

QUICK_TTS = TtsModel(first_audio_s=0.01, words_per_s=200)
QUICK_RETRY = RetryPolicy(
    deadline_s=1.0, attempt_timeout_s=0.3, backoff_initial_s=0.02, backoff_max_s=0.05, jitter_s=0.01
)
LOCAL = {"local_address_not_allowed", "host_name_not_allowed"}
UNUSABLE_NAME = {"malformed", "host_name_not_allowed"}
SECRET = "s3cr3t-hostile-token"
HOSTNAME = socket.gethostname()  # resolves to 127.0.0.1 through /etc/hosts on the test machines


async def refusal_of(raw: object) -> str | None:
    """What the app's check says about `raw` with local URLs not allowed."""
    try:
        parse_control_url(raw, allow_local=False)
    except InvalidControlUrl as exc:
        return exc.reason
    return None


# ---- 1. the check alone: every hostile shape, no connection, no DNS server ---------------------

HOSTILE: list[tuple[str, object, set[str]]] = [
    # schemes
    ("http", "http://8.8.4.4:12092/request/s/t", {"scheme_not_allowed"}),
    ("ftp", "ftp://8.8.4.4/request/s/t", {"scheme_not_allowed"}),
    ("wss", "wss://8.8.4.4/request/s/t", {"scheme_not_allowed"}),
    ("file", "file:///etc/passwd", {"scheme_not_allowed"}),
    ("javascript", "javascript:alert(1)//8.8.4.4/request", {"scheme_not_allowed"}),
    ("gopher", "gopher://127.0.0.1:6379/_SET", {"scheme_not_allowed"}),
    ("no-scheme", "//8.8.4.4/request/s/t", {"scheme_not_allowed"}),
    # userinfo
    ("userinfo", "https://user:pw@8.8.4.4/request/s/t", {"userinfo_not_allowed"}),
    ("user-only", "https://user@8.8.4.4/request/s/t", {"userinfo_not_allowed"}),
    ("empty-userinfo", "https://@8.8.4.4/request/s/t", {"userinfo_not_allowed"}),
    ("backslash-confusion", "https://8.8.4.4\\@127.0.0.1/request/s/t", {"userinfo_not_allowed"}),
    ("port-as-userinfo", "https://127.0.0.1:443@8.8.4.4/request/s/t", {"userinfo_not_allowed"}),
    # loopback, private, link-local, unspecified, multicast, literal IPv4 and IPv6
    ("loopback", "https://127.0.0.1/request/s/t", LOCAL),
    ("loopback-high", "https://127.255.255.254/request/s/t", LOCAL),
    ("loopback-trailing-dot", "https://127.0.0.1./request/s/t", LOCAL),
    ("private-10", "https://10.0.0.1/request/s/t", LOCAL),
    ("private-172", "https://172.31.255.1/request/s/t", LOCAL),
    ("private-192", "https://192.168.1.1/request/s/t", LOCAL),
    ("cgnat", "https://100.64.0.1/request/s/t", LOCAL),
    ("link-local", "https://169.254.10.10/request/s/t", LOCAL),
    ("unspecified", "https://0.0.0.0/request/s/t", LOCAL),
    ("broadcast", "https://255.255.255.255/request/s/t", LOCAL),
    ("multicast", "https://224.0.0.1/request/s/t", LOCAL),
    ("v6-loopback", "https://[::1]/request/s/t", LOCAL),
    ("v6-loopback-long", "https://[0:0:0:0:0:0:0:1]/request/s/t", LOCAL),
    ("v6-unspecified", "https://[::]/request/s/t", LOCAL),
    ("v6-ula", "https://[fd12:3456::1]/request/s/t", LOCAL),
    ("v6-link-local", "https://[fe80::1]/request/s/t", LOCAL),
    ("v6-link-local-zone", "https://[fe80::1%25eth0]/request/s/t", LOCAL),
    ("v6-multicast", "https://[ff02::1]/request/s/t", LOCAL),
    # cloud metadata services
    ("aws-metadata", "https://169.254.169.254/latest/meta-data/", LOCAL),
    ("aws-metadata-v6", "https://[fd00:ec2::254]/latest/meta-data/", LOCAL),
    ("alibaba-metadata", "https://100.100.100.200/latest/meta-data/", LOCAL),
    ("gcp-metadata", "https://metadata.google.internal/computeMetadata/v1/", LOCAL),
    ("gcp-metadata-dot", "https://metadata.google.internal./computeMetadata/v1/", LOCAL),
    ("gcp-metadata-short", "https://metadata/computeMetadata/v1/", LOCAL),
    # IPv4-mapped IPv6
    ("mapped-loopback", "https://[::ffff:127.0.0.1]/request/s/t", LOCAL),
    ("mapped-loopback-hex", "https://[::ffff:7f00:1]/request/s/t", LOCAL),
    ("mapped-metadata", "https://[::ffff:169.254.169.254]/request/s/t", LOCAL),
    ("mapped-private", "https://[::ffff:10.1.2.3]/request/s/t", LOCAL),
    # IPv6 forms that embed an IPv4 address other than the mapped one
    ("v4-compatible-loopback", "https://[::127.0.0.1]/request/s/t", LOCAL),
    ("v4-translated-loopback", "https://[::ffff:0:127.0.0.1]/request/s/t", LOCAL),
    ("nat64-loopback", "https://[64:ff9b::127.0.0.1]/request/s/t", LOCAL),
    ("nat64-metadata", "https://[64:ff9b::169.254.169.254]/latest/meta-data/", LOCAL),
    ("6to4-loopback", "https://[2002:7f00:1::1]/request/s/t", LOCAL),
    ("6to4-metadata", "https://[2002:a9fe:a9fe::1]/latest/meta-data/", LOCAL),
    # IPv4 spelled otherwise: decimal, octal, hex, short forms
    ("decimal", "https://2130706433/request/s/t", LOCAL),
    ("decimal-metadata", "https://2852039166/latest/meta-data/", LOCAL),
    ("hex", "https://0x7f000001/request/s/t", LOCAL),
    ("hex-dotted", "https://0x7f.0x0.0x0.0x1/request/s/t", LOCAL),
    ("hex-short", "https://0x7f.1/request/s/t", LOCAL),
    ("octal", "https://0177.0.0.1/request/s/t", LOCAL),
    ("octal-whole", "https://017700000001/request/s/t", LOCAL),
    ("zero-padded", "https://127.000.000.001/request/s/t", LOCAL),
    ("short", "https://127.1/request/s/t", LOCAL),
    ("zero", "https://0/request/s/t", LOCAL),
    ("ideographic-dots", "https://127\u30020\u30020\u30021/request/s/t", UNUSABLE_NAME),
    ("fullwidth-digits", "https://\uff11\uff12\uff17.0.0.1/request/s/t", UNUSABLE_NAME),
    # names that mean this machine
    ("localhost", "https://localhost/request/s/t", LOCAL),
    ("localhost-upper-dot", "https://LOCALHOST./request/s/t", LOCAL),
    ("localhost-localdomain", "https://localhost.localdomain/request/s/t", LOCAL),
    ("own-hostname", f"https://{HOSTNAME}/request/s/t", LOCAL),
    ("own-hostname-upper", f"https://{HOSTNAME.upper()}./request/s/t", LOCAL),
    # host names no resolver can even encode (IDNA): refused, not an exception that drops the call
    ("emoji-host", "https://\U0001f600.example/request/s/t", UNUSABLE_NAME),
    ("enclosed-digit-host", "https://\u2488.example/request/s/t", UNUSABLE_NAME),
    ("bidi-host", "https://\u05d0a.example/request/s/t", UNUSABLE_NAME),
    ("surrogate-host", "https://\ud800.example/request/s/t", UNUSABLE_NAME),
    # missing pieces, malformed, absurd
    # names on the allow-list's edge
    ("suffix-as-label", "https://voximplant.com.evil.example/request/s/t", {"host_name_not_allowed"}),
    ("suffix-glued", "https://evilvoximplant.com/request/s/t", {"host_name_not_allowed"}),
    ("suffix-userinfo", "https://www.voximplant.com@127.0.0.1/request/s/t", {"userinfo_not_allowed"}),
    ("underscore-name", "https://a_b.voximplant.com/request/s/t", {"malformed"}),
    # paths other than /request/<session>/<token>
    ("other-path", "https://8.8.4.4/admin", {"bad_path"}),
    ("dot-dot", "https://8.8.4.4/request/../../admin", {"bad_path"}),
    ("query", "https://8.8.4.4/request/s/t?next=http://127.0.0.1/", {"bad_path"}),
    ("no-path", "https://8.8.4.4", {"missing_path"}),
    ("root-path", "https://8.8.4.4/", {"missing_path"}),
    ("query-only", "https://8.8.4.4?x=1", {"missing_path"}),
    ("no-host", "https:///request/s/t", {"missing_host"}),
    ("fragment", "https://8.8.4.4/request/s/t#frag", {"malformed"}),
    ("bad-port", "https://8.8.4.4:99999/request/s/t", {"malformed"}),
    ("negative-port", "https://8.8.4.4:-1/request/s/t", {"malformed"}),
    ("unclosed-bracket", "https://[::1/request/s/t", {"malformed"}),
    ("nul-byte", "https://8.8.4.4/request/s/t\x00", {"malformed"}),
    ("newline", "https://8.8.4.4/request/s/t\r\nX-Injected: 1", {"malformed"}),
    ("tab-in-host", "https://8.8.\t4.4/request/s/t", {"malformed"}),
    ("long-path", "https://8.8.4.4/" + "a" * 5000, {"too_long"}),
    ("long-host", "https://" + "a" * 3000 + ".com/request/s/t", {"too_long"}),
    ("absurd", "https://8.8.4.4/" + "a" * 20_000_000, {"too_long"}),
    # not a string at all
    ("none", None, {"missing"}),
    ("empty", "", {"missing"}),
    ("number", 2130706433, {"not_a_string"}),
    ("list", ["https://8.8.4.4/request/s/t"], {"not_a_string"}),
    ("dict", {"url": "https://8.8.4.4/request/s/t"}, {"not_a_string"}),
    ("bytes", b"https://8.8.4.4/request/s/t", {"not_a_string"}),
]


@pytest.mark.parametrize(("raw", "reasons"), [(r, e) for _, r, e in HOSTILE], ids=[i for i, _, _ in HOSTILE])
async def test_the_check_refuses_every_hostile_url_without_connecting(
    raw: object, reasons: set[str], connect_guard: ConnectGuard
) -> None:
    with anyio.fail_after(5):  # an absurd URL is refused at once, not after parsing 20 MB
        try:
            reason = await refusal_of(raw)
        except Exception as exc:  # the app would drop the whole call (Line's get_agent error)
            pytest.fail(f"{str(raw)[:120]!r}: the check raised {exc!r} instead of refusing")
    assert reason in reasons, f"{str(raw)[:120]!r} was {'accepted' if reason is None else reason}"
    assert connect_guard.attempts == []


async def test_real_voxengine_urls_still_pass_the_check(connect_guard: ConnectGuard) -> None:
    # Guard against a check that "passes" the tests above by refusing everything.
    session = "5014DA08C37601ED.1771267099.44321981_109.61.92.230/FD8FE1FAD3DB5EFA"
    assert await refusal_of(f"https://www-us-35-230.voximplant.com:12093/request/{session}") is None
    assert await refusal_of(f"https://www-ru-52-18.voximplant.com:12093/request/{session}") is None
    assert await refusal_of("https://8.8.4.4:12092/request/abc/def") is None
    assert await refusal_of("https://[2001:4860:4860::8888]:12092/request/abc/def") is None
    assert connect_guard.attempts == [] and connect_guard.lookups == []  # checked, not resolved


# ---- 2. the real app: refused before any connection, and the call goes on ---------------------


@asynccontextmanager
async def strict_lab(**options: Any) -> AsyncIterator[CallLab]:
    """A CallLab whose app does NOT allow local addresses (production's setting): its pin of the
    emulator's name is ignored, as `VOX_CONTROL_RESOLVE` is without `VOX_CONTROL_ALLOW_LOCAL=1`."""
    settings = dataclasses.replace(Settings(), retry=QUICK_RETRY)
    async with CallLab(agent_factory=tool_agent, settings=settings, allow_local=False, **options) as lab:
        yield lab


def pointed_at(port: int) -> list[tuple[str, str, set[str]]]:
    """Hostile URLs that would all reach the counting listener if the app connected."""
    path = f"/request/s1/{SECRET}"
    return [
        ("loopback", f"https://127.0.0.1:{port}{path}", LOCAL),
        ("http-loopback", f"http://127.0.0.1:{port}{path}", {"scheme_not_allowed"}),
        ("wss-loopback", f"wss://127.0.0.1:{port}{path}", {"scheme_not_allowed"}),
        ("userinfo", f"https://u:pw@127.0.0.1:{port}{path}", {"userinfo_not_allowed"}),
        ("mapped", f"https://[::ffff:127.0.0.1]:{port}{path}", LOCAL),
        ("decimal", f"https://2130706433:{port}{path}", LOCAL),
        ("hex-short", f"https://0x7f.1:{port}{path}", LOCAL),
        ("octal", f"https://0177.0.0.1:{port}{path}", LOCAL),
        ("localhost", f"https://localhost:{port}{path}", LOCAL),
        ("own-hostname", f"https://{HOSTNAME}:{port}{path}", LOCAL),
        ("no-path", f"https://127.0.0.1:{port}", {"missing_path"}),
        ("other-name", f"https://www-us-35-230.voximplant.co:{port}{path}", {"host_name_not_allowed"}),
        ("too-long", f"https://127.0.0.1:{port}{path}/" + "a" * 5000, {"too_long"}),
        ("v4-compatible", f"https://[::127.0.0.1]:{port}{path}", LOCAL),
        ("nat64", f"https://[64:ff9b::127.0.0.1]:{port}{path}", LOCAL),
        ("emoji-host", f"https://\U0001f600.example:{port}{path}", UNUSABLE_NAME),
    ]


APP_CASES = [name for name, _, _ in pointed_at(1)]


@pytest.mark.parametrize("case", APP_CASES)
async def test_the_app_refuses_before_connecting_and_the_call_goes_on(
    case: str, connect_guard: ConnectGuard
) -> None:
    async with CountingListener() as listener:
        [(_, url, reasons)] = [c for c in pointed_at(listener.port) if c[0] == case]
        with captured_logs() as logs:
            async with strict_lab() as lab:
                async with lab.call(
                    tts=QUICK_TTS, metadata={"vox_session_control_url": url}, call_id="hostile"
                ) as sim:
                    await sim.wait_agent_turn_end(1, timeout_s=5)
                    await sim.user_says("An operator, please.")
                    cannot = await sim.wait_agent_turn_end(2)
                    await sim.user_says("What are your hours?")
                    answer = await sim.wait_agent_turn_end(3)
                await lab.wait_calls_ended(1)
        connected = listener.accepted
    refusal = lab.recorder.calls["hostile"].control_refusal
    assert refusal in reasons, f"{case}: control URL {'accepted' if refusal is None else refusal}"
    assert connected == 0, "a connection reached the listener"
    assert connect_guard.to_port(listener.port) == [], "a connection to the control port was attempted"
    assert connect_guard.off_loopback() == []
    assert lab.recorder.actions == [] and lab.emulator.requests == []
    assert cannot.text == prompt.UNAVAILABLE  # the tool says it cannot, the call goes on
    assert answer.text == CHAT_REPLY
    assert not sim.timeline.of_kind("error")
    text = "\n".join(logs)
    assert f"control URL refused ({refusal}); telephony tools disabled" in text
    assert SECRET not in text, "the bearer path of a refused URL reached the logs"


PASSWORD = "hunter2-hostile"
SECRET_SHAPES: list[tuple[str, object]] = [
    ("in-a-list", [f"https://8.8.4.4:12092/request/s1/{SECRET}"]),
    ("in-a-dict", {"url": f"https://8.8.4.4:12092/request/s1/{SECRET}"}),
    ("userinfo-password", f"https://voxengine:{PASSWORD}@8.8.4.4:12092/request/s1/{SECRET}"),
]


@pytest.mark.parametrize("value", [v for _, v in SECRET_SHAPES], ids=[i for i, _ in SECRET_SHAPES])
async def test_a_refused_url_of_any_shape_keeps_its_secrets_out_of_the_logs(
    value: object, connect_guard: ConnectGuard
) -> None:
    # "The URL's path is a bearer secret: logs show only its origin and a short hash" (README).
    # Line logs the whole start message; the redaction must find the secret whatever its shape.
    with captured_logs() as logs:
        async with strict_lab() as lab:
            async with lab.call(
                tts=QUICK_TTS, metadata={"vox_session_control_url": value}, call_id="shapes"
            ) as sim:
                await sim.wait_agent_turn_end(1, timeout_s=5)
            await lab.wait_calls_ended(1)
    assert lab.recorder.calls["shapes"].control_refusal is not None
    text = "\n".join(logs)
    assert "Received start message" in text
    assert SECRET not in text, "the bearer path reached the logs"
    assert PASSWORD not in text, "the URL's password reached the logs"
    assert connect_guard.off_loopback() == []


@asynccontextmanager
async def resolving(
    monkeypatch: pytest.MonkeyPatch, name: str, answers: list[str]
) -> AsyncIterator[list[str]]:
    """The system resolver answers `name` with `answers` in turn (the last repeats); yields the
    addresses handed out, one per lookup. Other names go to the connect_guard's resolver."""
    handed: list[str] = []
    guarded = socket.getaddrinfo

    def lookup(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        plain = host.decode() if isinstance(host, bytes) else host
        if plain != name:
            return guarded(host, port, *args, **kwargs)
        address = answers[min(len(handed), len(answers) - 1)]
        handed.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0))]

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    yield handed


async def test_a_name_that_rebinds_to_loopback_after_a_public_answer_never_reaches_it(
    connect_guard: ConnectGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: an allowed name answers a public address first, 127.0.0.1 on the next
    lookup. Each connection resolves once, checks, and connects to what it checked: the public
    address (refused by the guard: nothing leaves this machine), then nothing at all."""
    name = "rebind.voximplant.com"
    async with (
        CountingListener() as listener,
        resolving(monkeypatch, name, ["8.8.4.4", "127.0.0.1"]) as handed,
    ):
        url = f"https://{name}:{listener.port}/request/s1/{SECRET}"
        async with strict_lab() as lab:
            async with lab.call(
                tts=QUICK_TTS, metadata={"vox_session_control_url": url}, call_id="rebind"
            ) as sim:
                await sim.wait_agent_turn_end(1)
                await sim.user_says("An operator, please.")
                [outcome] = await lab.wait_outcomes(1, timeout_s=QUICK_RETRY.deadline_s + 5)
                await sim.user_says("What are your hours?")
                answer = await sim.wait_agent_turn_end(3)
            await lab.wait_calls_ended(1)
        connected = listener.accepted
    assert handed[:2] == ["8.8.4.4", "127.0.0.1"]
    assert connect_guard.to_port(listener.port) == [("8.8.4.4", listener.port)]
    assert connected == 0, "a connection reached 127.0.0.1"
    assert (outcome.name, outcome.attrs["reason"]) == ("failed", "local_address_not_allowed")
    assert answer.text == CHAT_REPLY  # a failed transfer leaves the call up


async def test_an_allowed_name_resolving_to_a_local_address_is_never_connected(
    connect_guard: ConnectGuard, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "internal.voximplant.com"
    async with CountingListener() as listener, resolving(monkeypatch, name, ["127.0.0.1"]) as handed:
        url = f"https://{name}:{listener.port}/request/s1/{SECRET}"
        with captured_logs() as logs:
            async with strict_lab() as lab:
                async with lab.call(
                    tts=QUICK_TTS, metadata={"vox_session_control_url": url}, call_id="internal"
                ) as sim:
                    await sim.wait_agent_turn_end(1)
                    await sim.user_says("An operator, please.")
                    [outcome] = await lab.wait_outcomes(1, timeout_s=QUICK_RETRY.deadline_s + 5)
                await lab.wait_calls_ended(1)
        connected = listener.accepted
    assert handed and set(handed) == {"127.0.0.1"}
    assert connected == 0 and connect_guard.to_port(listener.port) == []
    assert (outcome.attrs["reason"], outcome.attrs["attempts"]) == ("local_address_not_allowed", 1)
    assert SECRET not in "\n".join(logs)


async def test_a_pinned_name_is_not_pinned_outside_labs(connect_guard: ConnectGuard) -> None:
    # VOX_CONTROL_RESOLVE only counts with VOX_CONTROL_ALLOW_LOCAL=1: in production the lab's own
    # pinned name goes to DNS (here: unresolvable), and the emulator behind the pin is never fetched.
    async with strict_lab() as lab:
        async with lab.call(tts=QUICK_TTS, call_id="pinned") as sim:
            await sim.wait_agent_turn_end(1)
            await sim.user_says("An operator, please.")
            [outcome] = await lab.wait_outcomes(1, timeout_s=QUICK_RETRY.deadline_s + 5)
            await sim.user_says("What are your hours?")
            answer = await sim.wait_agent_turn_end(3)
        await lab.wait_calls_ended(1)
    assert outcome.attrs["reason"] == "deadline_exceeded:dns_error"
    assert lab.emulator.requests == [] and lab.emulator.connections == 0
    assert LAB_CONTROL_HOST in connect_guard.lookups
    assert answer.text == CHAT_REPLY


# ---- 3. redirects are never followed ----------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_a_final_failure_and_is_never_followed(status: int) -> None:
    async with CountingListener() as elsewhere:
        async with HostileControlServer(
            redirect_to=f"http://127.0.0.1:{elsewhere.port}/request/s1/stolen", root_status=status
        ) as server:
            url = server.url(f"redirect-{status}", SECRET)
            async with CallLab(
                agent_factory=tool_agent,
                settings=dataclasses.replace(Settings(), retry=QUICK_RETRY),
                pins=[server.host.pin],
            ) as lab:
                async with lab.call(
                    tts=QUICK_TTS, metadata={"vox_session_control_url": url}, call_id="redirected"
                ) as sim:
                    await sim.wait_agent_turn_end(1)
                    await sim.user_says("An operator, please.")
                    [outcome] = await lab.wait_outcomes(1, timeout_s=10)
                    await sim.user_says("What are your hours?")
                    answer = await sim.wait_agent_turn_end(3)
                await lab.wait_calls_ended(1)
            posts = [r for r in server.requests if r[0] == "POST"]
        followed = elsewhere.accepted
    assert outcome.name == "failed" and outcome.attrs["reason"] == f"http_{status}"
    assert outcome.attrs["attempts"] == 1  # a 3xx is the receiver's final word, not retried
    assert len(posts) == 1
    assert ("HEAD", "/") in server.requests  # the warm-up was redirected too, and not followed
    assert followed == 0, "the redirect was followed"
    assert answer.text == CHAT_REPLY  # a failed transfer leaves the call up


# ---- 4. response bodies are capped ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["huge", "huge-length"])
async def test_an_endless_response_body_is_cut_at_the_cap(mode: str) -> None:
    policy = RetryPolicy(deadline_s=5.0, attempt_timeout_s=3.0, backoff_initial_s=0.02, backoff_max_s=0.05)
    async with HostileControlServer() as server, make_control_client(server.host.network) as http:
        target = parse_control_url(server.url(mode, SECRET), allow_local=True)
        control = CallControl(target=target, client=VoxEngineClient(http, retry=policy))
        async with anyio.create_task_group() as tg:
            tg.start_soon(control.run)
            started = anyio.current_time()
            assert control.request(CALL_TRANSFER, summary="x").status == "held"
            control.observe(AgentTurnStarted())
            control.observe(AgentTurnEnded())  # released: the POST goes out
            control.close()
            with anyio.fail_after(policy.attempt_timeout_s):  # no hang: well inside one attempt
                await control.wait_finished()
            elapsed = anyio.current_time() - started
            await server.wait_streams_ended(1, timeout_s=5)  # the client hung up on the body
    [outcome] = control.outcomes
    assert (outcome.status, outcome.reason, outcome.attempts) == ("failed", "body_too_large", 1)
    assert elapsed < policy.attempt_timeout_s
    # The client read at most the cap; what the server wrote beyond it sat in socket buffers.
    assert server.body_bytes_sent < 64 * 1024 * 1024
