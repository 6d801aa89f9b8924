"""Self-signed OPC UA application instance certificates (the gateway's, and the simulators').

OPC UA (Part 6, 6.2.2) wants the application URI as a URI subjectAltName, the host
names and addresses the application runs on as DNS/IP names, digitalSignature,
keyEncipherment and dataEncipherment key usage, and the client or server extended
key usage. asyncua's ``cert_gen`` builds exactly that; this module adds the key
size, the names and the files (certificate DER, key PEM, optionally encrypted).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
from collections.abc import Sequence
from pathlib import Path

from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

__all__ = ["KEY_SIZES", "default_host_names", "make_app_certificate", "sha1_thumbprint"]

#: RSA key sizes the OPC UA security policies accept (Basic256Sha256 and the Aes ones: 2048-4096)
KEY_SIZES = (2048, 3072, 4096)


def default_host_names() -> list[str]:
    """``localhost``, this machine's host name and ``127.0.0.1``."""
    names = ["localhost", socket.gethostname(), "127.0.0.1"]
    return list(dict.fromkeys(names))


def _general_names(application_uri: str, hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_app_certificate(
    cert_path: Path,
    key_path: Path,
    application_uri: str,
    *,
    server: bool,
    common_name: str | None = None,
    days: int = 365,
    key_size: int = 2048,
    hosts: Sequence[str] | None = None,
    key_password: str | None = None,
) -> tuple[Path, Path]:
    """Write a self-signed certificate (DER) and its RSA key (PEM) for an OPC UA application.

    ``hosts`` are host names or IP addresses (default :func:`default_host_names`). The key
    file is created readable by its owner only, and encrypted when ``key_password`` is given.
    """
    if key_size not in KEY_SIZES:
        raise ValueError(f"key size {key_size}: use one of {', '.join(map(str, KEY_SIZES))}")
    if days < 1:
        raise ValueError("a certificate is valid for at least 1 day")
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    names = _general_names(application_uri, default_host_names() if hosts is None else hosts)
    usage = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = cert_gen.generate_self_signed_app_certificate(
        key, common_name or application_uri, {}, names, usage, days=days
    )
    if key_password:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(key_password.encode()),
        )
    else:
        pem = cert_gen.dump_private_key_as_pem(key)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(key_path, 0o600)  # also when the file existed (--force) with a wider mode
    return cert_path, key_path


def sha1_thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 thumbprint, ``AB:CD:...``: what OPC UA servers show in their trust lists."""
    digest = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
