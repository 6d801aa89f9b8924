"""Verifying a bundle against the trusted keys: each refusal with its reason, each outcome audited.

The checks, in order (the first that fails is the reason answered and audited):

==================  =====================================================================
``malformed``       not a strict ustar archive, no ``manifest.json``, a manifest or
                    signature file that does not parse
``unsigned``        no ``manifest.sig`` (or, where signatures are required, a raw payload)
``unknown_key``     signed by a key id the config does not trust
``bad_signature``   the signature does not verify over ``manifest.json``'s bytes
``wrong_kind``      a bundle of another kind than the path it came in by takes
``key_not_allowed`` the key may not sign this kind (``bundles.signers``)
``file_mismatch``   a listed file missing, of another size or SHA-256, or a file not listed
``payload_mismatch`` the payload does not match the manifest (the kind's own check: a
                    model manifest naming another ``.onnx``, an image of another version)
``stale_version``   not newer than the version of this kind and name applied last
                    (a replay, or an old bundle): :mod:`gateway.bundles.versions`
==================  =====================================================================

The signature is checked before anything in the manifest is believed; the manifest's
hashes then vouch for each file. A verified bundle is not yet applied: the caller
applies it and then calls :meth:`BundleVerifier.applied`, which records the version
(only then does a second copy become a replay).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.bundles import archive, keys
from gateway.bundles.manifest import (
    KINDS,
    MANIFEST_FILE,
    SIGNATURE_FILE,
    Manifest,
    Version,
)
from gateway.bundles.manifest import parse as parse_manifest
from gateway.bundles.versions import AppliedVersions, version_key
from gateway.errors import BundleRefused

#: a bundle's largest size (bytes) unless the config says otherwise
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
MAX_SIGNATURE_FILE_BYTES = 4096
ALGORITHM = "ed25519"


class AuditSink(Protocol):
    """Where outcomes go: the gateway's append-only audit log
    (:class:`gateway.audit.AuditLog`, which answers the line's sequence number)."""

    def record(self, event: str, **fields: Any) -> object: ...


@dataclass(frozen=True, slots=True)
class Trust:
    """The keys a gateway trusts and which of them may sign each kind (``bundles`` block)."""

    keys: Mapping[str, keys.PublicKey] = field(default_factory=dict)
    #: kind -> ids of the keys that may sign it
    signers: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: refuse raw (unsigned) payloads where a bundle could be sent instead
    require_signed: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES


@dataclass(frozen=True, slots=True)
class Signature:
    """``manifest.sig``: which key signed, and the 64 signature bytes."""

    key_id: str
    signature: bytes

    def dump(self) -> bytes:
        return json.dumps({"algorithm": ALGORITHM, "key": self.key_id,
                           "signature": base64.b64encode(self.signature).decode()},
                          sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, data: bytes) -> Signature:
        def refuse(detail: str) -> BundleRefused:
            return BundleRefused("malformed", f"{SIGNATURE_FILE}: {detail}")

        if len(data) > MAX_SIGNATURE_FILE_BYTES:
            raise refuse(f"{len(data)} bytes, more than {MAX_SIGNATURE_FILE_BYTES}")
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise refuse(f"not JSON: {exc}") from None
        if not isinstance(body, dict) or set(body) != {"algorithm", "key", "signature"}:
            raise refuse("must be an object with exactly algorithm, key and signature")
        if body["algorithm"] != ALGORITHM:
            raise refuse(f"algorithm {body['algorithm']!r}; only {ALGORITHM!r} is accepted")
        key_id, text = body["key"], body["signature"]
        if not isinstance(key_id, str) or not 0 < len(key_id) <= 64:
            raise refuse("key must be a key id of 1 to 64 characters")
        try:
            if not isinstance(text, str):
                raise ValueError
            signature = base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            raise refuse("signature is not base64") from None
        if len(signature) != keys.SIGNATURE_BYTES:
            raise refuse(f"signature of {len(signature)} bytes, an Ed25519 one has "
                         f"{keys.SIGNATURE_BYTES}")
        return cls(key_id, signature)


@dataclass(frozen=True, slots=True)
class UnverifiedBundle:
    """A bundle's parts as read, nothing checked but the archive's shape."""

    manifest_bytes: bytes
    signature_bytes: bytes | None
    files: dict[str, bytes]
    sha256: str
    size: int


def read_bundle(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> UnverifiedBundle:
    """Split a bundle into manifest, signature and payload files; :class:`BundleRefused`
    (``malformed``) when it is not one."""
    entries = dict(archive.unpack(data, max_bytes))
    manifest = entries.pop(MANIFEST_FILE, None)
    if manifest is None:
        raise BundleRefused("malformed", f"not a bundle: no {MANIFEST_FILE} in the archive")
    signature = entries.pop(SIGNATURE_FILE, None)
    return UnverifiedBundle(manifest, signature, entries, hashlib.sha256(data).hexdigest(),
                            len(data))


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    """A bundle whose signature, key, files and version passed: safe to apply."""

    manifest: Manifest
    key_id: str
    files: Mapping[str, bytes]
    #: of the whole bundle file, as received
    sha256: str
    #: where its version is kept (:func:`~gateway.bundles.versions.version_key`)
    version_key: str

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> Version:
        return self.manifest.version

    def describe(self) -> str:
        return f"{self.kind} bundle {self.name} {self.version} signed by {self.key_id}"


#: a kind's own check of a verified payload (raises :class:`BundleRefused`, usually
#: ``payload_mismatch``): a model manifest against its ``.onnx``, an image's version
PayloadCheck = Callable[[VerifiedBundle], None]


def looks_like_bundle(data: bytes) -> bool:
    """A bundle (a tar archive), not a raw payload such as a firmware image."""
    return archive.looks_like_tar(data)


class BundleVerifier:
    """Checks bundles against a :class:`Trust` and the applied versions; audits each outcome
    as an ``event: bundle`` line (``outcome``: refused, verified, applied)."""

    def __init__(self, trust: Trust, versions: AppliedVersions,
                 audit: AuditSink | None = None) -> None:
        self.trust = trust
        self.versions = versions
        self._audit = audit

    def verify(self, data: bytes, *, kind: str, source: str, scope: str = "",
               check: PayloadCheck | None = None) -> VerifiedBundle:
        """Verify ``data`` as a bundle of ``kind`` that came from ``source`` (for the
        audit: ``http /api/firmware/node-3``, ``cmd fw-0042``); ``scope`` makes its
        version history per target (a device, for firmware). Raise :class:`BundleRefused`
        with the reason; both outcomes are audited."""
        assert kind in KINDS, kind
        facts: dict[str, Any] = {"kind": kind, "source": source,
                                 "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        try:
            bundle = self._verify(data, kind, scope, check, facts)
        except BundleRefused as exc:
            self._record("refused", reason=exc.reason, detail=exc.detail, **facts)
            raise
        self._record("verified", **facts)
        return bundle

    def refuse_unsigned(self, *, kind: str, source: str, what: str) -> BundleRefused:
        """The refusal of a raw payload (``what``: "an MCUboot image") where signatures are
        required; audited. Raise what it returns."""
        exc = BundleRefused("unsigned", f"{what} is not a signed bundle and this gateway "
                            f"requires signed {kind} bundles (bundles.require_signed)")
        self._record("refused", kind=kind, source=source, reason=exc.reason, detail=exc.detail)
        return exc

    def applied(self, bundle: VerifiedBundle, source: str) -> None:
        """The bundle was applied: record its version (the next copy is a replay) and audit.
        A failure to record is audited and logged by the caller's error handling
        (:class:`OSError` is raised)."""
        self.versions.record(bundle.version_key, bundle.version, sha256=bundle.sha256,
                             key=bundle.key_id)
        self._record("applied", kind=bundle.kind, name=bundle.name,
                     version=bundle.version.text, key=bundle.key_id, sha256=bundle.sha256,
                     source=source)

    def _record(self, outcome: str, **fields: Any) -> None:
        if self._audit is not None:
            self._audit.record("bundle", outcome=outcome, **fields)

    def _verify(self, data: bytes, kind: str, scope: str, check: PayloadCheck | None,
                facts: dict[str, Any]) -> VerifiedBundle:
        raw = read_bundle(data, self.trust.max_bytes)
        if raw.signature_bytes is None:
            raise BundleRefused("unsigned", f"the bundle has no {SIGNATURE_FILE}: unsigned "
                                "bundles are never accepted")
        signature = Signature.parse(raw.signature_bytes)
        facts["key"] = signature.key_id
        public = self.trust.keys.get(signature.key_id)
        if public is None:
            trusted = ", ".join(sorted(self.trust.keys)) or "none"
            raise BundleRefused("unknown_key", f"signed by key {signature.key_id!r}, which "
                                f"this gateway does not trust (trusted: {trusted})")
        if not keys.signature_valid(public, signature.signature, raw.manifest_bytes):
            raise BundleRefused("bad_signature", f"the signature by key {signature.key_id!r} "
                                f"({keys.fingerprint(public)}) does not verify: the manifest "
                                "was altered or signed by another key")
        manifest = parse_manifest(raw.manifest_bytes)
        facts.update(name=manifest.name, version=manifest.version.text)
        if manifest.kind != kind:
            raise BundleRefused("wrong_kind", f"a {manifest.kind} bundle where a {kind} "
                                "bundle is expected")
        allowed = self.trust.signers.get(kind, frozenset())
        if signature.key_id not in allowed:
            raise BundleRefused("key_not_allowed", f"key {signature.key_id!r} may not sign "
                                f"{kind} bundles (allowed: {', '.join(sorted(allowed)) or 'none'};"
                                f" bundles.signers.{kind})")
        _check_files(manifest, raw.files)
        bundle = VerifiedBundle(manifest, signature.key_id, raw.files, raw.sha256,
                                version_key(kind, manifest.name, scope))
        if check is not None:
            check(bundle)
        last = self.versions.last(bundle.version_key)
        if last is not None and manifest.version <= last:
            raise BundleRefused("stale_version", f"{kind} {manifest.name} version "
                                f"{manifest.version} is not newer than {last}, applied before"
                                f"{' on ' + scope if scope else ''} (a replayed or stale bundle)")
        return bundle


def _check_files(manifest: Manifest, files: Mapping[str, bytes]) -> None:
    listed = {f.name for f in manifest.files}
    extra = sorted(set(files) - listed)
    if extra:
        raise BundleRefused("file_mismatch", f"file(s) not in the manifest: {', '.join(extra)}")
    for f in manifest.files:
        body = files.get(f.name)
        if body is None:
            raise BundleRefused("file_mismatch", f"{f.name}: listed in the manifest, not in "
                                "the bundle")
        if len(body) != f.size:
            raise BundleRefused("file_mismatch", f"{f.name}: {len(body)} bytes, the manifest "
                                f"says {f.size}")
        actual = hashlib.sha256(body).hexdigest()
        if actual != f.sha256:
            raise BundleRefused("file_mismatch", f"{f.name}: SHA-256 {actual}, the manifest "
                                f"says {f.sha256}")
