"""deploy/Caddyfile, read as text (no caddy binary here): it proxies to the server's default port,
health-checks Line's /status, and lets live calls outlast a reload as long as the drain does."""

from __future__ import annotations

import re
from pathlib import Path

from agent.settings import DEFAULT_CALL_DRAIN_TIMEOUT_S, DEFAULT_PORT

CADDYFILE = (Path(__file__).resolve().parents[2] / "deploy" / "Caddyfile").read_text()
DIRECTIVES = [
    line.strip() for line in CADDYFILE.splitlines() if line.strip() and not line.strip().startswith("#")
]


def _directive(name: str) -> list[str]:
    (found,) = [line.split() for line in DIRECTIVES if line.split()[0] == name]
    return found[1:]


def test_it_proxies_to_the_servers_port_and_checks_status() -> None:
    assert _directive("reverse_proxy")[0] == f"127.0.0.1:{DEFAULT_PORT}"
    assert _directive("health_uri") == ["/status"]


def test_a_reload_waits_for_calls_as_long_as_the_drain() -> None:
    (delay,) = _directive("stream_close_delay")
    minutes = re.fullmatch(r"(\d+)m", delay)
    assert minutes is not None and int(minutes.group(1)) * 60 > DEFAULT_CALL_DRAIN_TIMEOUT_S
