"""`python -m agent.link` against a fake of Cartesia's agents API on loopback (a real HTTP server), and
its `--check` against the real app (Line's VoiceAgentApp) served on loopback."""

from __future__ import annotations

import functools
import io
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agent.app import TelephonyAgentApp
from agent.control_url import fingerprint
from agent.link import CARTESIA_VERSION, Exit, main
from agent.settings import Settings
from lab.asgi_server import serve_on_loopback, server_port

pytestmark = pytest.mark.anyio

KEY = "sk_car_test-key-never-printed"
AGENT = "agent_3kQ9"
SECRET = "p4th-s3cret-0123456789abcdef"

Storage = Literal["verbatim", "without_scheme", "host_only"]


@dataclass
class FakeCartesia:
    """Cartesia's `GET`/`PATCH /agents/{agent_id}` as the docs describe them; `storage` is how the
    stored URL comes back (a third-party report: without its scheme; a path dropped: the worry)."""

    storage: Storage = "without_scheme"
    agents: dict[str, str | None] = field(default_factory=lambda: {AGENT: None})
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)

    def _store(self, value: str | None) -> str | None:
        if value is None or self.storage == "verbatim":
            return value
        without_scheme = value.split("://", 1)[1]
        return without_scheme.split("/", 1)[0] if self.storage == "host_only" else without_scheme

    async def agent(self, request: Request) -> JSONResponse:
        body = await request.json() if request.method == "PATCH" else None
        self.requests.append((request.method, dict(request.headers), body))
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": "Invalid API key"}, status_code=401)
        agent_id = request.path_params["agent_id"]
        if agent_id not in self.agents:
            return JSONResponse({"error": "Agent not found"}, status_code=404)
        if body is not None:
            self.agents[agent_id] = self._store(body["self_hosted_deployment_url"])
        return JSONResponse(
            {"id": agent_id, "name": "support line", "self_hosted_deployment_url": self.agents[agent_id]}
        )

    async def list_agents(self, request: Request) -> JSONResponse:
        self.requests.append((request.method, dict(request.headers), None))
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": "Invalid API key"}, status_code=401)
        # As the published list example: no self_hosted_deployment_url in a summary.
        return JSONResponse(
            {"summaries": [{"id": agent_id, "name": "support line"} for agent_id in self.agents]}
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/agents", self.list_agents, methods=["GET"]),
                Route("/agents/{agent_id}", self.agent, methods=["GET", "PATCH"]),
            ]
        )


@dataclass
class Run:
    code: int
    out: str
    err: str


async def run_link(*argv: str, api_base: str = "", key: str = KEY) -> Run:
    out, err = io.StringIO(), io.StringIO()
    env = {"CARTESIA_API_KEY": key, "CARTESIA_API_BASE": api_base}
    with anyio.fail_after(30):  # the CLI is synchronous: it runs in a thread while servers run here
        code = await anyio.to_thread.run_sync(functools.partial(main, list(argv), env, out, err))
    run = Run(code, out.getvalue(), err.getvalue())
    assert KEY not in run.out + run.err
    return run


@pytest.fixture
async def cartesia() -> AsyncIterator[tuple[FakeCartesia, str]]:
    fake = FakeCartesia()
    async with serve_on_loopback(fake.app()) as server:
        yield fake, f"http://127.0.0.1:{server_port(server)}"


async def test_link_sets_the_url_and_reports_what_cartesia_kept(cartesia: tuple[FakeCartesia, str]) -> None:
    fake, base = cartesia
    run = await run_link("--agent-id", AGENT, "--url", f"https://Agent.Example.com/{SECRET}/", api_base=base)
    assert (run.code, run.err) == (Exit.OK, "")
    assert fake.agents[AGENT] == f"agent.example.com/{SECRET}"  # sent lower-cased, without the slash
    assert [(method, body) for method, _, body in fake.requests] == [
        ("PATCH", {"self_hosted_deployment_url": f"https://agent.example.com/{SECRET}"}),
        ("GET", None),  # read back: what Cartesia kept, not what it echoed
    ]
    for _, headers, _ in fake.requests:
        assert headers["cartesia-version"] == CARTESIA_VERSION
    assert "(without its scheme)" in run.out and "path kept" in run.out
    assert SECRET not in run.out and fingerprint(SECRET) in run.out  # the path secret only as a fingerprint


async def test_a_url_stored_verbatim_is_fine_too(cartesia: tuple[FakeCartesia, str]) -> None:
    fake, base = cartesia
    fake.storage = "verbatim"
    run = await run_link("--agent-id", AGENT, "--url", "https://agent.example.com", api_base=base)
    assert run.code == Exit.OK
    assert "without its scheme" not in run.out and "no path" in run.out


async def test_a_dropped_path_is_an_error_that_says_why(cartesia: tuple[FakeCartesia, str]) -> None:
    fake, base = cartesia
    fake.storage = "host_only"
    run = await run_link("--agent-id", AGENT, "--url", f"https://agent.example.com/{SECRET}", api_base=base)
    assert run.code == Exit.NOT_KEPT
    assert "WARNING: Cartesia dropped the path" in run.err and "AGENT_PATH_SECRET" in run.err
    assert "Cartesia stored: agent.example.com (without its scheme)" in run.out


async def test_show_and_unlink(cartesia: tuple[FakeCartesia, str]) -> None:
    fake, base = cartesia
    fake.agents[AGENT] = "agent.example.com"
    shown = await run_link("--agent-id", AGENT, "--show", api_base=base)
    assert (shown.code, shown.out) == (Exit.OK, "self_hosted_deployment_url: agent.example.com\n")
    unlinked = await run_link("--agent-id", AGENT, "--unlink", api_base=base)
    assert unlinked.code == Exit.OK and "cleared" in unlinked.out
    assert fake.requests[-2][2] == {"self_hosted_deployment_url": None}  # null, as the migration page says
    assert fake.agents[AGENT] is None
    shown = await run_link("--agent-id", AGENT, "--show", api_base=base)
    assert shown.out == "self_hosted_deployment_url: not set\n"


async def test_list_names_the_agents_ids(cartesia: tuple[FakeCartesia, str]) -> None:
    _, base = cartesia
    run = await run_link("--list", api_base=base)
    assert (run.code, run.out) == (Exit.OK, f"{AGENT}\tsupport line\t-\n")


async def test_a_bad_key_and_an_unknown_agent_have_their_own_exit_codes(
    cartesia: tuple[FakeCartesia, str],
) -> None:
    fake, base = cartesia
    refused = await run_link("--agent-id", AGENT, "--show", api_base=base, key="sk_car_wrong")
    assert refused.code == Exit.AUTH and "CARTESIA_API_KEY" in refused.err
    assert "sk_car_wrong" not in refused.out + refused.err
    unknown = await run_link("--agent-id", "agent_nope", "--url", "https://agent.example.com", api_base=base)
    assert unknown.code == Exit.NOT_FOUND and "agent_nope" in unknown.err
    assert [method for method, _, _ in fake.requests] == ["GET", "PATCH"]  # nothing after the refusal


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed on exit: connecting there is refused


async def test_no_answer_is_a_network_failure() -> None:
    run = await run_link("--agent-id", AGENT, "--show", api_base=f"http://127.0.0.1:{_closed_port()}")
    assert run.code == Exit.NETWORK and "no answer from Cartesia's API" in run.err


@pytest.mark.parametrize(
    ("argv", "env_key", "message"),
    [
        (["--agent-id", AGENT, "--url", "http://agent.example.com"], KEY, "--url must be https://"),
        (["--agent-id", AGENT, "--url", "wss://agent.example.com"], KEY, "--url must be https://"),
        (["--agent-id", AGENT, "--url", "https://agent.example.com/chats"], KEY, "base URL"),
        (["--agent-id", AGENT, "--url", "https://u:p@agent.example.com"], KEY, "user:password"),
        (["--agent-id", AGENT, "--url", "https://agent.example.com/?k=v"], KEY, "query"),
        (["--agent-id", "a/b", "--show"], KEY, "not an agent id"),
        (["--url", "https://agent.example.com"], KEY, "--agent-id is required"),
        (["--agent-id", AGENT, "--show"], "", "CARTESIA_API_KEY is not set"),
    ],
)
async def test_bad_input_is_refused_before_any_request(argv: list[str], env_key: str, message: str) -> None:
    # The API base is a closed port: a request would be a network failure, not this.
    run = await run_link(*argv, api_base=f"http://127.0.0.1:{_closed_port()}", key=env_key)
    assert run.code == Exit.BAD_INPUT and message in run.err


async def test_the_api_key_is_not_sent_over_plain_http_off_this_machine() -> None:
    run = await run_link("--agent-id", AGENT, "--show", api_base="http://api.cartesia.ai")
    assert run.code == Exit.BAD_INPUT and "CARTESIA_API_BASE must be https://" in run.err


async def _serve(env: dict[str, str]) -> AsyncIterator[str]:
    app = TelephonyAgentApp(Settings.from_env({"OPENAI_API_KEY": "sk-test", "HOST": "127.0.0.1", **env}))
    async with serve_on_loopback(app.fastapi_app) as server:
        yield f"http://127.0.0.1:{server_port(server)}"


@pytest.fixture
async def agent_server() -> AsyncIterator[str]:
    async for url in _serve({}):
        yield url


@pytest.fixture
async def secret_path_server() -> AsyncIterator[str]:
    async for url in _serve({"AGENT_PATH_SECRET": SECRET}):
        yield url


async def test_check_reaches_status_chats_and_the_websocket_of_the_real_app(agent_server: str) -> None:
    run = await run_link("--check", agent_server)
    assert run.code == Exit.OK, run.err
    lines = run.out.splitlines()
    assert [line.split(" -> ")[0].split()[0] for line in lines] == ["GET", "POST", "websocket"]
    assert lines[0].endswith("/status -> 200") and lines[1].endswith("/chats -> 200")
    assert lines[2].startswith("websocket ws://127.0.0.1:") and "handshake accepted" in lines[2]


async def test_check_names_a_wrong_path_and_an_unreachable_server(agent_server: str) -> None:
    wrong_path = await run_link("--check", f"{agent_server}/not-the-secret")
    assert wrong_path.code == Exit.CHECK_FAILED and "without a websocket_url" in wrong_path.err
    unreachable = await run_link("--check", f"http://127.0.0.1:{_closed_port()}")
    assert unreachable.code == Exit.NETWORK


async def test_check_goes_through_the_path_secret(secret_path_server: str) -> None:
    run = await run_link("--check", f"{secret_path_server}/{SECRET}")
    assert run.code == Exit.OK, run.err
    assert SECRET not in run.out
    assert f"<sha256:{fingerprint(SECRET)}>/ws -> handshake accepted" in run.out
    assert "confirm with a test call" in run.out
    bare = await run_link("--check", secret_path_server)  # the secret routes only: bare /chats is 404
    assert bare.code == Exit.CHECK_FAILED
