"""Ed25519 keys: the public keys the config trusts, the private keys the brain signs with.

A public key in the config is any one of: a PEM block (``-----BEGIN PUBLIC KEY-----``,
what ``openssl pkey -pubout`` writes), the base64 of its DER (``MCowBQYDK2VwAyEA...``),
the base64 of the 32 raw key bytes (what most Ed25519 libraries print), or an OpenSSH
line (``ssh-ed25519 AAAA...``). A private key is PKCS#8 PEM, optionally encrypted with a
passphrase; ``bundle keygen`` writes it readable by its owner only (0600).

This is the one module that reaches ``cryptography`` (its errors become
:class:`ValueError` here, its signature check a boolean). It imports it when a key is
first used: ``cryptography`` adds about 20 MB to a process, which a gateway whose config
trusts no key never needs (issue 21: import only what the config uses).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    #: the key types, named here so that no other module imports ``cryptography``
    PublicKey = Ed25519PublicKey
    PrivateKey = Ed25519PrivateKey


def __getattr__(name: str) -> Any:
    """``PublicKey`` and ``PrivateKey`` at run time, imported when first asked for."""
    if name in ("PublicKey", "PrivateKey"):
        from cryptography.hazmat.primitives.asymmetric import ed25519

        return ed25519.Ed25519PublicKey if name == "PublicKey" else ed25519.Ed25519PrivateKey
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

RAW_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def load_public_key(text: str) -> Ed25519PublicKey:
    """The Ed25519 public key in ``text``; raise :class:`ValueError` saying what it is instead."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        elif text.startswith("ssh-"):
            key = serialization.load_ssh_public_key(text.encode())
        else:
            raw = base64.b64decode(text, validate=True)
            if len(raw) == RAW_KEY_BYTES:
                return Ed25519PublicKey.from_public_bytes(raw)
            key = serialization.load_der_public_key(raw)
    except binascii.Error:
        raise ValueError("not a PEM block, an OpenSSH line or base64") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"a {type(key).__name__.removeprefix('_')} key, not Ed25519")
    return key


def raw_public_bytes(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_text(key: Ed25519PublicKey) -> str:
    """The base64 of the raw key: the one-line form for the config."""
    return base64.b64encode(raw_public_bytes(key)).decode()


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(key: Ed25519PublicKey) -> str:
    """A short name of the key's bytes for logs and the audit: ``SHA256:`` + 16 hex digits."""
    return "SHA256:" + hashlib.sha256(raw_public_bytes(key)).hexdigest()[:16]


def generate_private_key() -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def write_private_key(key: Ed25519PrivateKey, path: Path, passphrase: bytes | None = None) -> None:
    """Write ``key`` as PKCS#8 PEM to a new file readable by its owner only (0600); an
    existing file is never overwritten (:class:`FileExistsError`)."""
    from cryptography.hazmat.primitives import serialization

    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase
        else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            encryption)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file ``path``; :class:`ValueError` when it is
    another kind of key, encrypted without the passphrase, or not a key;
    :class:`OSError` when it cannot be read."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, passphrase)
    except TypeError as exc:  # encrypted without a passphrase, or a passphrase for a plain key
        raise ValueError(str(exc)) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"a {type(key).__name__.removeprefix('_')} key, not Ed25519")
    return key


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature of ``message`` (RFC 8032, pure Ed25519)."""
    return key.sign(message)


def signature_valid(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """Does ``signature`` sign ``message`` under ``key``?"""
    from cryptography.exceptions import InvalidSignature

    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True
