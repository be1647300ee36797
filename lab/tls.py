"""Throwaway TLS for the lab: a run-time CA and server certificates for VoxEngine-shaped host names.

Real VoxEngine control URLs name a host (`www-us-35-230.voximplant.com:12093`, real session
logs), so the lab's control hosts serve certificates for such names and clients reach them by
name, verifying the certificate as in production. Built with `cryptography` (EC P-256, valid
for one day). One CA per process (`lab_ca()`) signs every lab host, so one trust store
(`SSL_CERT_FILE` = `lab_ca().ca_file`) serves a call that talks to several; its PEM file lives
in a temporary directory removed when the process exits.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import ipaddress
import shutil
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["LAB_CONTROL_HOST", "LabCa", "lab_ca"]

# The host name of a real VoxEngine media server's accessSecureURL (real session logs).
LAB_CONTROL_HOST = "www-us-35-230.voximplant.com"

_NO_USAGE = dict(
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    encipher_only=False,
    decipher_only=False,
)


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.timezone.utc)
    return now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)


@dataclass(frozen=True)
class LabCa:
    """A certificate authority that exists for one process (or one test)."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    ca_file: Path  # PEM, for SSL_CERT_FILE

    @classmethod
    def create(cls, directory: Path, name: str = "vox-lab throwaway CA") -> LabCa:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        not_before, not_after = _validity()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **_NO_USAGE),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        ca_file = directory / "lab-ca.pem"
        ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert, ca_file)

    def server_context(
        self, names: Sequence[str] = (LAB_CONTROL_HOST,), addresses: Sequence[str] = ()
    ) -> ssl.SSLContext:
        """A server TLS context with a fresh certificate for `names` (DNS) and `addresses` (IP)."""
        key = ec.generate_private_key(ec.SECP256R1())
        ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        not_before, not_after = _validity()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (*names, *addresses)[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(prefix="vox-lab-tls-") as tmp:  # load_cert_chain reads files
            cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            key_path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            context.load_cert_chain(cert_path, key_path)
        return context


@functools.cache
def lab_ca() -> LabCa:
    """The process's lab CA (created on first use; its directory is removed at exit)."""
    directory = Path(tempfile.mkdtemp(prefix="vox-lab-ca-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return LabCa.create(directory)
