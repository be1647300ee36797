"""Fixtures of the hardening suite."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hardening._support import ConnectGuard


def _hosts_file_names() -> set[str]:
    names: set[str] = set()
    try:
        text = Path("/etc/hosts").read_text()
    except OSError:
        return names
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        names.update(name.lower() for name in fields[1:])
    return names


def _numeric(host: str) -> bool:
    """An address the C library reads without asking DNS (IPv6, or any inet_aton IPv4 form)."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        pass
    try:
        socket.inet_aton(host)
        return True
    except OSError:
        return False


@pytest.fixture
def connect_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectGuard]:
    """This process connects to 127.0.0.1 only, and asks no DNS server anything.

    Every TCP/UDP connect is recorded in `guard.attempts`; a destination other than 127.0.0.1 is
    refused (ConnectionRefusedError) before anything leaves. Name lookups are answered from
    /etc/hosts and numeric forms only; any other name is "unresolvable" (recorded in
    `guard.lookups`), so a test never reaches the machine's DNS resolver.
    """
    guard = ConnectGuard()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo
    local_names = _hosts_file_names()

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        address = tuple(address) if isinstance(address, (tuple, list)) else (address,)
        guard.attempts.append(address)
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError(f"hardening tests connect to 127.0.0.1 only, not {address!r}")

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode("latin-1") if isinstance(host, bytes) else host
        if name is not None:
            guard.lookups.append(str(name))
            plain = str(name).rstrip(".").lower()
            if not _numeric(plain) and plain not in local_names:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (hardening: no DNS)")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield guard
