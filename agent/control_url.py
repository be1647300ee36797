"""The per-call control URL: validation before any connection, and redaction for logs.

VoxEngine control URLs look like `https://<ip>:12092/request/<session>/<token>`; the path is a
bearer secret, so only the origin and a short fingerprint ever leave this module.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import anyio

MAX_URL_LENGTH = 2048
# Names that always mean "this machine" or a cloud metadata service, whatever DNS says.
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "metadata.google.internal", "metadata"})


class InvalidControlUrl(ValueError):
    """The control URL is missing or unsafe; `reason` is a short code safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fingerprint(url: str) -> str:
    """A short, stable, non-reversible id for a secret URL (for logs and spans)."""
    return hashlib.sha256(url.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ControlTarget:
    """A validated control URL. `repr` and `str` never show the secret path."""

    url: str = field(repr=False)
    origin: str
    host: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.url)

    @property
    def redacted(self) -> str:
        return f"{self.origin}/…#{self.fingerprint}"

    def __str__(self) -> str:
        return self.redacted


def is_local_address(host: str) -> bool:
    """True for loopback, private, link-local, reserved and other non-public IP literals."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def parse_control_url(raw: object, *, allow_local: bool = False) -> ControlTarget:
    """Validate `raw` as a control URL or raise `InvalidControlUrl` with a reason code.

    `allow_local` (VOX_CONTROL_ALLOW_LOCAL=1, for labs and tests) admits http and local hosts.
    """
    if raw is None or raw == "":
        raise InvalidControlUrl("missing")
    if not isinstance(raw, str):
        raise InvalidControlUrl("not_a_string")
    if len(raw) > MAX_URL_LENGTH:
        raise InvalidControlUrl("too_long")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in raw):
        raise InvalidControlUrl("malformed")
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise InvalidControlUrl("malformed") from None
    allowed_schemes = ("https", "http") if allow_local else ("https",)
    if parts.scheme not in allowed_schemes:
        raise InvalidControlUrl("scheme_not_allowed")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidControlUrl("userinfo_not_allowed")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidControlUrl("missing_host")
    if parts.path in ("", "/"):
        raise InvalidControlUrl("missing_path")
    if parts.fragment:
        raise InvalidControlUrl("malformed")
    if not allow_local and (host.lower() in _LOCAL_NAMES or is_local_address(host)):
        raise InvalidControlUrl("local_address_not_allowed")
    netloc_host = f"[{host}]" if ":" in host else host
    origin = f"{parts.scheme}://{netloc_host}" + (f":{port}" if port is not None else "")
    return ControlTarget(url=raw, origin=origin, host=host)


async def check_resolves_public(target: ControlTarget, *, timeout_s: float = 2.0) -> None:
    """Refuse a host *name* that resolves to a local address (`InvalidControlUrl`).

    IP literals were checked by `parse_control_url`. VoxEngine's URLs carry literal IPs, so this
    costs nothing for them; a name is resolved once, bounded, before any connection is made.
    """
    try:
        ipaddress.ip_address(target.host)
        return
    except ValueError:
        pass
    try:
        with anyio.fail_after(timeout_s):
            infos = await anyio.getaddrinfo(target.host, None, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        raise InvalidControlUrl("unresolvable_host") from None
    if not infos or any(is_local_address(str(info[4][0])) for info in infos):
        raise InvalidControlUrl("resolves_to_local_address")
