"""Secure channel set-up for the OPC UA client: policy, identity, server certificate trust."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path

from asyncua import Client, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import security_policies
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.uacrypto import load_certificate
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from drivers.opcua.config import OpcUaDeviceConfig, OpcUaSecurity
from gateway.config.secrets import resolve_secret

log = logging.getLogger(__name__)

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
MODES = {
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
DEFAULT_APPLICATION_URI = "urn:chenxing-edge:gateway"
_DER = Encoding.DER


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint, ``AB:CD:...``, as engineers compare it with the server's."""
    digest = hashlib.sha256(cert.public_bytes(_DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def certificate_uri(cert: x509.Certificate) -> str | None:
    """The application URI in a certificate's subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


class ServerTrust:
    """Decides whether a server certificate is trusted: the same certificate is in the trust
    folder, or a CA in the folder issued it. Reloads the folder on every connect, so an
    engineer can drop a certificate in without a restart."""

    def __init__(self, device: str, security: OpcUaSecurity) -> None:
        self.device = device
        self.trust_dir = security.trust_dir
        self.trust_any = security.trust_any_server

    async def __call__(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        now = datetime.now(UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            log.error("%s: the server certificate is outside its validity (%s .. %s)",
                      self.device, cert.not_valid_before_utc, cert.not_valid_after_utc)
            raise ServiceError(ua.StatusCodes.BadCertificateTimeInvalid)
        if self.trust_any:
            log.warning("%s: trust_any_server is on: accepting server certificate %s (%s) "
                        "without checking it", self.device, cert.subject.rfc4514_string(),
                        fingerprint(cert))
            return
        if self.trust_dir is not None and await self._trusted(cert):
            return
        log.error(
            "%s: server certificate %s (SHA-256 %s) is not trusted: copy it into %s after "
            "checking the fingerprint on the server",
            self.device, cert.subject.rfc4514_string(), fingerprint(cert), self.trust_dir,
        )
        raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    async def _trusted(self, cert: x509.Certificate) -> bool:
        assert self.trust_dir is not None
        if not self.trust_dir.is_dir():
            log.error("%s: trust folder %s does not exist", self.device, self.trust_dir)
            return False
        der = cert.public_bytes(_DER)
        for path in sorted(self.trust_dir.iterdir()):
            if path.suffix.lower() not in (".der", ".pem", ".crt", ".cer"):
                continue
            try:
                trusted = await load_certificate(path)
            except Exception as exc:  # a stray file must not stop the others
                log.warning("%s: cannot read %s: %s", self.device, path, exc)
                continue
            if trusted.public_bytes(_DER) == der:
                return True
        store = TrustStore([self.trust_dir], [])
        try:
            await store.load_trust()
            return bool(store.is_trusted(cert))
        except Exception:
            log.debug("%s: CA check failed", self.device, exc_info=True)
            return False


async def configure(client: Client, cfg: OpcUaDeviceConfig) -> None:
    """Set identity, application URI and (when configured) the secure channel on ``client``.

    With a secure policy this asks the server for its endpoints (GetEndpoints over
    an unsecured channel, as every OPC UA client does), picks the one matching
    policy and mode, and installs :class:`ServerTrust` to check the certificate
    before the session (and any password) is sent.
    """
    sec = cfg.security
    client.name = f"chenxing-edge {cfg.name}"
    client.description = client.name
    client.application_uri = sec.application_uri or DEFAULT_APPLICATION_URI
    if cfg.username is not None and cfg.password is not None:
        client.set_user(cfg.username)
        client.set_password(resolve_secret(cfg.password))
    if sec.policy == "None":
        return
    assert sec.certificate is not None and sec.private_key is not None
    cert = await load_certificate(Path(sec.certificate))
    if sec.application_uri is None:
        client.application_uri = certificate_uri(cert) or DEFAULT_APPLICATION_URI
    key_password = (
        resolve_secret(sec.private_key_password) if sec.private_key_password is not None else None
    )
    await client.set_security(
        POLICIES[sec.policy],
        str(sec.certificate),
        str(sec.private_key),
        key_password,
        None,
        MODES[sec.mode],
    )
    client.certificate_validator = ServerTrust(cfg.name, sec)
