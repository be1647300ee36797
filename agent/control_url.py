"""The per-call control URL: validation before any connection, and redaction for logs and spans.

VoxEngine control URLs look like `https://<ip>:12092/request/<session>/<token>`; the path is a
bearer secret, so only the origin and a short fingerprint ever leave this module.

Outside local labs the host must be a public IP literal. VoxEngine always sends one, and a host
*name* could be resolved to a public address when checked and to an internal one when connected
(DNS rebinding), so names are refused rather than resolved.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
REDACTED = "REDACTED"
# IPv6 ranges that carry an IPv4 address in their low 32 bits: IPv4-compatible, IPv4-translated,
# and NAT64's well-known prefix. Such an address reaches whatever its IPv4 address reaches.
_EMBEDDING_V4 = tuple(ipaddress.ip_network(n) for n in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96"))
_LOCAL_V6 = (ipaddress.ip_network("64:ff9b:1::/48"),)  # NAT64 for local use (RFC 8215)


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


def _embedded_v4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if any(ip in net for net in _EMBEDDING_V4):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [v4 for v4 in found if v4 is not None]


def is_local_address(host: str) -> bool:
    """True for loopback, private, link-local, reserved and other non-public IP literals,
    including IPv6 forms that embed such an IPv4 address."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in _LOCAL_V6) or any(is_local_address(str(v4)) for v4 in _embedded_v4(ip)):
            return True
    return not ip.is_global or ip.is_multicast


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


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
    if not host.isascii():
        raise InvalidControlUrl("malformed")
    if parts.path in ("", "/"):
        raise InvalidControlUrl("missing_path")
    if parts.fragment:
        raise InvalidControlUrl("malformed")
    if not allow_local:
        if not _is_ip_literal(host):
            raise InvalidControlUrl("host_name_not_allowed")
        if is_local_address(host):
            raise InvalidControlUrl("local_address_not_allowed")
    netloc_host = f"[{host}]" if ":" in host else host
    origin = f"{parts.scheme}://{netloc_host}" + (f":{port}" if port is not None else "")
    return ControlTarget(url=raw, origin=origin, host=host)


# scheme://authority followed by an optional path, query or fragment, up to whitespace or quotes.
_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*)://([^\s/?#\"'<>]+)([/?#][^\s\"'<>]*)?")


def redact_url(text: str) -> str:
    """`text` with every URL reduced to scheme, host and port: userinfo and any path, query or
    fragment beyond a bare "/" become REDACTED. Text that holds no URL comes back unchanged."""
    return _URL.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    scheme, authority, rest = match.group(1), match.group(2), match.group(3) or ""
    if "@" in authority:
        authority = f"{REDACTED}:{REDACTED}@" + authority.rsplit("@", 1)[1]
    tail = rest if rest in ("", "/") else f"/{REDACTED}"
    return f"{scheme}://{authority}{tail}"
