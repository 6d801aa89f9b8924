"""Self-signed OPC UA application certificates for simulators and tests (nothing downloaded)."""

from __future__ import annotations

import socket
from pathlib import Path

from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

__all__ = ["make_app_certificate"]


def make_app_certificate(
    cert_path: Path,
    key_path: Path,
    application_uri: str,
    *,
    server: bool,
    common_name: str | None = None,
    days: int = 365,
) -> tuple[Path, Path]:
    """Write a self-signed certificate (DER) and its RSA 2048 key (PEM) for an OPC UA app.

    The certificate carries ``application_uri`` as URI SubjectAltName (OPC UA
    requires it) and ``localhost``/the host name/127.0.0.1 as DNS and IP names.
    """
    import ipaddress

    key = cert_gen.generate_private_key()
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(application_uri),
        x509.DNSName("localhost"),
        x509.DNSName(socket.gethostname()),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    usage = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = cert_gen.generate_self_signed_app_certificate(
        key, common_name or application_uri, {}, names, usage, days=days
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return cert_path, key_path
