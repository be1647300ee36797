"""Point a Cartesia agent at this server: `python -m agent.link`.

Cartesia stopped hosting Line SDK code on 2026-12-01; a self-hosted agent server keeps working when
the Cartesia agent's `self_hosted_deployment_url` names it (docs.cartesia.ai/agents/migrate-from-line-sdk:
set the field on the agent, send `null` to disconnect).

    python -m agent.link --agent-id ID --url https://agent.example.com[/<AGENT_PATH_SECRET>]
    python -m agent.link --agent-id ID --show
    python -m agent.link --agent-id ID --unlink
    python -m agent.link --list                  # this API key's agents: id, name, stored URL
    python -m agent.link --check https://agent.example.com[/<AGENT_PATH_SECRET>]

The API calls follow Cartesia's API reference: `PATCH /agents/{agent_id}` and `GET /agents/{agent_id}`
(docs.cartesia.ai/api-reference/agents/agents/update), a `Cartesia-Version` header (that page's only
accepted value is 2026-03-01) and `Authorization: Bearer <api key>` (docs.cartesia.ai/api-reference,
"Use API keys to authenticate"). `self_hosted_deployment_url` is not in the published request schema
of the update page; the migration page names it, and a third-party deployment
(a Railway-hosted Line agent's README) sets it with this very request and reads it back from
`GET /agents/{id}` without its scheme. So after every change the value Cartesia kept is read back and
compared with what was sent; a path (`AGENT_PATH_SECRET`'s `/<secret>`) that did not survive is an
error, because every call would then miss the secret routes.

Which form to register is undocumented. Line's `POST /chats` answers a relative `websocket_url`
(line/voice_agent_app.py, Line 0.2.19), so Cartesia derives the websocket from the registered base:
register the `https://` form (Cartesia's own API is HTTPS-only; the `wss://` form is what it then opens
for `/ws`). Whether Cartesia health-checks a self-hosted server is undocumented too: `--check` is our own
smoke test, from wherever it runs (run it from outside your network).

The API key is read from `CARTESIA_API_KEY` and never printed; a URL's path (it may hold the path
secret) is printed with its first segment as a fingerprint (`agent.control_url.fingerprint`:
`printf %s "$AGENT_PATH_SECRET" | sha256sum | cut -c1-12` gives the same).
"""

from __future__ import annotations

import argparse
import enum
import ipaddress
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO
from urllib.parse import quote, urljoin, urlsplit

import httpx
from websockets.exceptions import InvalidHandshake, InvalidURI
from websockets.sync.client import connect as ws_connect

from agent.control_url import fingerprint

DEFAULT_API_BASE = "https://api.cartesia.ai"
CARTESIA_VERSION = "2026-03-01"  # docs.cartesia.ai/api-reference/agents/agents/update: the enum's one value
FIELD = "self_hosted_deployment_url"
TIMEOUT_S = 10.0


class Exit(enum.IntEnum):
    OK = 0
    BAD_INPUT = 2  # as argparse's own usage errors
    AUTH = 3  # 401/403: the key is wrong, revoked, or not allowed to edit this agent
    NOT_FOUND = 4  # 404: no such agent for this key
    NETWORK = 5  # no answer: DNS, refused, TLS, timeout
    API = 6  # any other answer we cannot use
    NOT_KEPT = 7  # Cartesia stored something else than what was sent (a dropped path: calls would fail)
    CHECK_FAILED = 8  # --check: the server answered, but not as a Line agent server ready for calls


class LinkError(Exception):
    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code


def _fail(code: Exit, message: str) -> NoReturn:
    raise LinkError(code, message)


@dataclass(frozen=True)
class AgentUrl:
    """A self-hosted agent server's base URL, split the way Cartesia's stored value is compared."""

    scheme: str
    host: str  # lower-case; an IPv6 literal in brackets
    port: int | None
    path: str  # "" or "/<segments>" without a trailing slash

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    @property
    def netloc(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.origin + self.path

    def redacted(self) -> str:
        """Host, port and the path with its first segment (where AGENT_PATH_SECRET goes) as a
        fingerprint: safe to print."""
        first, slash, rest = self.path.strip("/").partition("/")
        return self.netloc + (f"/<sha256:{fingerprint(first)}>{slash}{rest}" if first else "")


def _split(raw: str, *, what: str) -> AgentUrl:
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        _fail(Exit.BAD_INPUT, f"{what}: not a URL ({exc})")
    if parts.username is not None or parts.password is not None:
        _fail(Exit.BAD_INPUT, f"{what}: no user:password@ in the URL")
    if parts.query or parts.fragment:
        _fail(Exit.BAD_INPUT, f"{what}: no query string or fragment (Line's routes are paths)")
    if not host:
        _fail(Exit.BAD_INPUT, f"{what}: the URL names no host")
    if ":" in host:
        host = f"[{host}]"
    return AgentUrl(parts.scheme.lower(), host.lower(), port, parts.path.rstrip("/"))


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def parse_agent_url(raw: str) -> AgentUrl:
    """The URL to register: https, a host, optionally the path secret's `/<secret>`."""
    url = _split(raw, what="--url")
    if url.scheme != "https":
        _fail(
            Exit.BAD_INPUT,
            f"--url must be https:// (got {url.scheme or 'no'} scheme): register the base URL of the "
            "server behind TLS, e.g. https://agent.example.com; Cartesia opens wss:// for /ws from it",
        )
    if url.path.endswith(("/chats", "/ws", "/status")):
        _fail(Exit.BAD_INPUT, "--url is the server's base URL: without /chats, /ws or /status")
    return url


def parse_check_url(raw: str) -> AgentUrl:
    """--check also takes http://, for a server on this machine before TLS is in front of it."""
    url = _split(raw, what="--check")
    if url.scheme not in ("https", "http"):
        _fail(Exit.BAD_INPUT, f"--check: an http(s):// URL, got scheme {url.scheme or 'none'!r}")
    return url


def parse_api_base(env: Mapping[str, str]) -> AgentUrl:
    raw = env.get("CARTESIA_API_BASE", "").strip() or DEFAULT_API_BASE
    base = _split(raw, what="CARTESIA_API_BASE")
    # The API key travels in a header: plain http only to this machine (a local fake in tests).
    if base.scheme != "https" and not (base.scheme == "http" and _is_loopback(base.host)):
        _fail(Exit.BAD_INPUT, f"CARTESIA_API_BASE must be https:// (http:// only on loopback), got {raw!r}")
    return base


def _api_key(env: Mapping[str, str]) -> str:
    key = env.get("CARTESIA_API_KEY", "").strip()
    if not key:
        _fail(Exit.BAD_INPUT, "CARTESIA_API_KEY is not set (create one at play.cartesia.ai/keys)")
    return key


def _agent_id(raw: str) -> str:
    agent_id = raw.strip()
    if not agent_id or any(c.isspace() or c in "/?#" for c in agent_id):
        _fail(Exit.BAD_INPUT, f"--agent-id: {raw!r} is not an agent id")
    return agent_id


class CartesiaAgents:
    """The calls of Cartesia's agents API this tool needs."""

    def __init__(self, client: httpx.Client, base: AgentUrl, api_key: str) -> None:
        self._client = client
        self._base = str(base)
        self._headers = {"Authorization": f"Bearer {api_key}", "Cartesia-Version": CARTESIA_VERSION}

    def _request(
        self, method: str, agent_id: str | None, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        url = f"{self._base}/agents" + ("" if agent_id is None else f"/{quote(agent_id, safe='')}")
        try:
            response = self._client.request(method, url, headers=self._headers, json=body)
        except httpx.TransportError as exc:
            _fail(
                Exit.NETWORK, f"no answer from Cartesia's API at {self._base} ({type(exc).__name__}: {exc})"
            )
        if response.status_code in (401, 403):
            _fail(
                Exit.AUTH,
                f"Cartesia refused the API key ({response.status_code}): check CARTESIA_API_KEY "
                "(play.cartesia.ai/keys) and that it belongs to the agent's organization",
            )
        if response.status_code == 404 and agent_id is not None:
            _fail(Exit.NOT_FOUND, f"Cartesia knows no agent {agent_id!r} for this API key (404)")
        if response.status_code != 200:
            _fail(Exit.API, f"Cartesia answered {response.status_code} to {method}: {response.text[:300]}")
        try:
            agent = response.json()
        except ValueError:
            agent = None
        if not isinstance(agent, dict):
            _fail(Exit.API, f"Cartesia's answer to {method} is not a JSON object: {response.text[:300]}")
        return agent

    def stored_url(self, agent_id: str) -> str | None:
        agent = self._request("GET", agent_id)
        if FIELD not in agent:
            _fail(Exit.API, f"Cartesia's agent has no {FIELD} field: its API may have changed")
        value = agent[FIELD]
        if value is not None and not isinstance(value, str):
            _fail(Exit.API, f"Cartesia's {FIELD} is not a string: {value!r}")
        return value or None

    def set_url(self, agent_id: str, url: AgentUrl | None) -> None:
        self._request("PATCH", agent_id, {FIELD: None if url is None else str(url)})

    def listed(self) -> list[dict[str, Any]]:
        """`GET /agents` (docs.cartesia.ai/api-reference/agents/agents/list: `{"summaries": [...]}`;
        a `data` envelope, as elsewhere in the API, is read too)."""
        answer = self._request("GET", None)
        agents = answer.get("summaries", answer.get("data"))
        if not isinstance(agents, list) or not all(isinstance(agent, dict) for agent in agents):
            _fail(Exit.API, "Cartesia's agent list has neither summaries nor data: its API may have changed")
        return agents


def stored_form(value: str) -> AgentUrl:
    """What Cartesia kept, parsed; it may drop the scheme (a third-party report): none means https."""
    return _split(value if "://" in value else f"https://{value}", what=FIELD)


def compare(sent: AgentUrl, stored: str | None) -> tuple[list[str], str | None]:
    """What Cartesia kept (scheme aside), as notes for the operator, and the problem if it is not `sent`."""
    if stored is None:
        return [], f"Cartesia stored no {FIELD} after the update: calls will not reach this server"
    kept = stored_form(stored)
    notes = [f"Cartesia stored: {kept.redacted()}" + ("" if "://" in stored else " (without its scheme)")]
    if kept.netloc != sent.netloc:
        return notes, f"WARNING: Cartesia kept host {kept.netloc}, not {sent.netloc}"
    if kept.path != sent.path:
        lost = "dropped the path" if not kept.path else "changed the path"
        return notes, (
            f"WARNING: Cartesia {lost} of the URL. With AGENT_PATH_SECRET set, every call would miss "
            "/<secret>/chats and fail. Unset AGENT_PATH_SECRET (and protect the server otherwise: "
            "docs/security.md), or ask Cartesia support whether a path is supported."
        )
    return [*notes, "path kept" if sent.path else "no path (AGENT_PATH_SECRET unset)"], None


def smoke_check(client: httpx.Client, url: AgentUrl, out: TextIO) -> None:
    """Reach the server the way Cartesia would: /status, POST /chats, then the websocket handshake
    (closed before any start message, so no call and no LLM work starts)."""
    try:
        status = client.get(f"{url.origin}/status")
        out.write(f"GET {url.netloc}/status -> {status.status_code}\n")
        if status.status_code == 503:
            _fail(Exit.CHECK_FAILED, "/status answers 503: the server is draining (or at capacity)")
        if status.status_code != 200:
            _fail(Exit.CHECK_FAILED, f"/status answers {status.status_code}: not a Line agent server?")
        chats = client.post(f"{url}/chats", json={"call_id": "agent-link-check"})
        out.write(f"POST {url.redacted()}/chats -> {chats.status_code}\n")
    except httpx.TransportError as exc:
        _fail(Exit.NETWORK, f"no answer from {url.netloc} ({type(exc).__name__}: {exc})")
    try:
        relative = chats.json()["websocket_url"] if chats.status_code == 200 else None
    except (ValueError, KeyError, TypeError):
        relative = None
    if not isinstance(relative, str):
        _fail(
            Exit.CHECK_FAILED,
            f"/chats answered {chats.status_code} without a websocket_url: wrong path "
            "(AGENT_PATH_SECRET must match the URL's path) or not a Line agent server",
        )
    # Resolved as any HTTP client resolves a relative reference, against the /chats URL. How Cartesia
    # resolves it is undocumented (assumption); agent/app.py answers "/<secret>/ws" under a path secret,
    # so this reading reaches the secret route.
    joined = urljoin(f"{url}/chats", relative)
    ws_url = _split(joined, what="websocket_url")
    ws_url = AgentUrl("wss" if ws_url.scheme == "https" else "ws", ws_url.host, ws_url.port, ws_url.path)
    try:
        with ws_connect(str(ws_url), open_timeout=TIMEOUT_S, close_timeout=TIMEOUT_S):
            pass
    except (InvalidHandshake, InvalidURI) as exc:
        _fail(Exit.CHECK_FAILED, f"websocket {ws_url.redacted()} refused: {exc}")
    except (OSError, TimeoutError) as exc:
        _fail(Exit.NETWORK, f"websocket {ws_url.redacted()}: no connection ({type(exc).__name__}: {exc})")
    out.write(f"websocket {ws_url.scheme}://{ws_url.redacted()} -> handshake accepted, closed before start\n")
    if url.path:
        out.write(
            "note: with a path, Cartesia is assumed to resolve websocket_url as a relative reference "
            "(undocumented): confirm with a test call\n"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agent.link",
        description="Set, show or clear a Cartesia agent's self_hosted_deployment_url; smoke-test a server.",
        epilog="exit status: "
        + ", ".join(f"{code.value} {code.name.lower().replace('_', ' ')}" for code in Exit)
        + ". Environment: CARTESIA_API_KEY, CARTESIA_API_BASE (default https://api.cartesia.ai).",
    )
    parser.add_argument("--agent-id", help="the Cartesia agent's id (play.cartesia.ai, the agent's page)")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--url", help="register this base URL (https://host[/<AGENT_PATH_SECRET>])")
    action.add_argument("--show", action="store_true", help="print what Cartesia stored")
    action.add_argument(
        "--list", action="store_true", help="list this key's agents: id, name (no --agent-id)"
    )
    action.add_argument("--unlink", action="store_true", help="clear the URL (sends null)")
    action.add_argument("--check", metavar="URL", help="smoke-test a server: /status, /chats, the websocket")
    return parser


def run(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> Exit:
    with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as client:
        if args.check is not None:
            smoke_check(client, parse_check_url(args.check), out)
            return Exit.OK
        if args.list:
            api = CartesiaAgents(client, parse_api_base(env), _api_key(env))
            for agent in api.listed():
                url = agent.get(FIELD)
                shown = stored_form(url).redacted() if isinstance(url, str) and url else "-"
                out.write(f"{agent.get('id')}\t{agent.get('name')}\t{shown}\n")
            return Exit.OK
        if args.agent_id is None:
            _fail(Exit.BAD_INPUT, "--agent-id is required with --url, --show and --unlink")
        agent_id = _agent_id(args.agent_id)
        sent = parse_agent_url(args.url) if args.url is not None else None
        api = CartesiaAgents(client, parse_api_base(env), _api_key(env))
        if args.show:
            stored = api.stored_url(agent_id)
            out.write(f"{FIELD}: {stored_form(stored).redacted() if stored else 'not set'}\n")
            return Exit.OK
        api.set_url(agent_id, sent)
        stored = api.stored_url(agent_id)  # read back: what Cartesia kept, not what it echoed
        if sent is None:
            if stored is not None:
                _fail(Exit.NOT_KEPT, f"Cartesia still stores {stored_form(stored).redacted()} after unlink")
            out.write(f"{FIELD}: cleared; agent {agent_id} no longer calls a self-hosted server\n")
            return Exit.OK
        notes, problem = compare(sent, stored)
        out.write(f"sent: {sent.scheme}://{sent.redacted()}\n" + "".join(f"{note}\n" for note in notes))
        if problem is not None:
            _fail(Exit.NOT_KEPT, problem)
        return Exit.OK


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Exit status: `Exit`. Results go to `out`, the one error line to `err`."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    args = _parser().parse_args(argv)
    try:
        return int(run(args, os.environ if env is None else env, out))
    except LinkError as exc:
        out.flush()
        err.write(f"agent.link: {exc}\n")
        return int(exc.code)


if __name__ == "__main__":
    sys.exit(main())
