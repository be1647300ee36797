"""Throwaway TLS for the lab: a run-time CA and server certificates for VoxEngine-shaped host names.

Real VoxEngine control URLs name a host (`www-us-35-230.voximplant.com:12093`, real session
logs), so the lab's control hosts serve certificates for such names and clients reach them by
name, verifying the certificate as in production. The certificates come from `trustme` (EC
P-256 keys). One CA per process (`lab_ca()`) signs every lab host, so one trust store
(`SSL_CERT_FILE` = `lab_ca().ca_file`) serves a call that talks to several; its PEM file lives
in a temporary directory removed when the process exits.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["LAB_CONTROL_HOST", "LabCa", "lab_ca"]

# The host name of a real VoxEngine media server's accessSecureURL (real session logs).
LAB_CONTROL_HOST = "www-us-35-230.voximplant.com"


@dataclass(frozen=True)
class LabCa:
    """A certificate authority that exists for one process (or one test)."""

    ca: trustme.CA
    ca_file: Path  # PEM, for SSL_CERT_FILE

    @classmethod
    def create(cls, directory: Path, name: str = "vox-lab throwaway CA") -> LabCa:
        ca = trustme.CA(organization_unit_name=name)
        ca_file = directory / "lab-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        return cls(ca, ca_file)

    def server_context(self, names: Sequence[str] = (LAB_CONTROL_HOST,)) -> ssl.SSLContext:
        """A server TLS context with a fresh certificate for `names` (host names or IP addresses)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert(*names).configure_cert(context)
        return context


@functools.cache
def lab_ca() -> LabCa:
    """The process's lab CA (created on first use; its directory is removed at exit)."""
    directory = Path(tempfile.mkdtemp(prefix="vox-lab-ca-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return LabCa.create(directory)
