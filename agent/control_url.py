"""URL safety for the per-call control URL: which URLs are accepted, which addresses may be
reached, and how the URL is shown in logs and spans.

Real VoxEngine sessions send their `accessSecureURL`, e.g.
`https://www-us-35-230.voximplant.com:12093/request/<session>/<token>` (a host name: a
certificate cannot name a bare IP). The path is a bearer secret, so only the origin and a short
fingerprint ever leave this module.

The rules, in the order they are checked (the first that fails gives the refusal's reason):
- a non-empty string of at most 2048 characters without whitespace or control characters
  (`missing`, `not_a_string`, `too_long`, `malformed`);
- scheme `https`, in local labs too, for the lab runs the production path (`scheme_not_allowed`);
- no userinfo (`userinfo_not_allowed`);
- an ASCII host, a port in range, no fragment (`missing_host`, `malformed`); a path (`missing_path`);
- a host that is an IP literal must be public, any local one passing only with `allow_local`
  (`local_address_not_allowed`);
- a host that is a name must be under an allowed suffix (default `voximplant.com`) and valid DNS
  syntax (`host_name_not_allowed`, `malformed`);
- the path is exactly `/request/<session>/<token>`, without a query (`bad_path`).

A name passing these rules is not trusted yet: `agent/control_transport.py` resolves it once
per connection, refuses it when any address is local (`is_local_address`, unless `allow_local`),
and connects to the address it checked, so nothing can re-resolve it in between.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
REDACTED = "REDACTED"
DEFAULT_ALLOWED_HOSTS: tuple[str, ...] = ("voximplant.com",)
# IPv6 ranges that carry an IPv4 address in their low 32 bits: IPv4-compatible, IPv4-translated,
# and NAT64's well-known prefix. Such an address reaches whatever its IPv4 address reaches.
_EMBEDDING_V4 = tuple(ipaddress.ip_network(n) for n in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96"))
_LOCAL_V6 = (ipaddress.ip_network("64:ff9b:1::/48"),)  # NAT64 for local use (RFC 8215)
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
# VoxEngine's session ids look like `5014DA08C37601ED.1771267099.44321981_109.61.92.230`, its
# tokens like `FD8FE1FAD3DB5EFA` (real session logs).
_SEGMENT = r"(?!\.\.?(?:/|$))[A-Za-z0-9._~-]{1,256}"  # not "." or ".."
_CONTROL_PATH = re.compile(rf"/request/{_SEGMENT}/{_SEGMENT}")


class InvalidControlUrl(ValueError):
    """The control URL is missing or unsafe; `reason` is a short code safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def fingerprint(url: str) -> str:
    """A short, stable, non-reversible id for a secret URL (for logs and spans). The scenario
    logs the same one for its `accessSecureURL`, so both sides' logs can be matched."""
    return hashlib.sha256(url.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ControlTarget:
    """A validated control URL. `repr` and `str` never show the secret path.

    `url` is rebuilt from the checked parts (host lower-cased, no trailing dot), so the request
    goes to exactly what was checked; `fingerprint` is of the URL as VoxEngine sent it.
    """

    url: str = field(repr=False)
    origin: str
    host: str
    fingerprint: str

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


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_dns_name(name: str) -> bool:
    """Letters, digits and hyphens in dot-separated labels of 1-63 characters (lower case), the
    last not all digits (so no IPv4 address in any spelling is a name)."""
    labels = name.split(".")
    return len(name) <= 253 and all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def host_allowed(host: str, suffixes: Sequence[str]) -> bool:
    """`host` is one of `suffixes` or a name under one (`a.voximplant.com` under `voximplant.com`)."""
    return any(host == suffix or host.endswith("." + suffix) for suffix in suffixes)


def parse_control_url(
    raw: object,
    *,
    allowed_hosts: Sequence[str] = DEFAULT_ALLOWED_HOSTS,
    allow_local: bool = False,
) -> ControlTarget:
    """Validate `raw` as a control URL or raise `InvalidControlUrl` with a reason code.

    `allowed_hosts`: host-name suffixes (VOX_CONTROL_ALLOWED_HOSTS extends the default).
    `allow_local` (VOX_CONTROL_ALLOW_LOCAL=1, labs and tests): a local IP literal passes; names
    and every other rule stay as in production.
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
    if parts.scheme != "https":
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
    if is_ip_literal(host):
        if is_local_address(host) and not allow_local:
            raise InvalidControlUrl("local_address_not_allowed")
    elif not host_allowed(host, allowed_hosts):
        raise InvalidControlUrl("host_name_not_allowed")
    elif not is_dns_name(host):
        raise InvalidControlUrl("malformed")
    if parts.query or not _CONTROL_PATH.fullmatch(parts.path):
        raise InvalidControlUrl("bad_path")
    netloc_host = f"[{host}]" if ":" in host else host
    origin = f"https://{netloc_host}" + (f":{port}" if port is not None else "")
    return ControlTarget(url=origin + parts.path, origin=origin, host=host, fingerprint=fingerprint(raw))


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
