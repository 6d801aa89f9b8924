"""Signed bundles: a config, a model package or an MCU firmware image, signed by the brain.

A bundle is a plain tar holding ``manifest.json`` (kind, name, version, created, each
file's size and SHA-256), ``manifest.sig`` (an Ed25519 signature over the manifest's
bytes and the id of the key that made it) and the payload files. The gateway trusts
the public keys of its config's ``bundles`` block and refuses, with a reason and an
audit line, anything unsigned, badly signed, signed by a key it does not know or that
may not sign that kind, with a file that does not match, or not newer than the version
applied last. See ``docs/bundles.md``.

Modules: :mod:`~gateway.bundles.archive` (the tar), :mod:`~gateway.bundles.manifest`,
:mod:`~gateway.bundles.keys` (the one user of ``cryptography``),
:mod:`~gateway.bundles.signing` (making one), :mod:`~gateway.bundles.verify` (checking
one), :mod:`~gateway.bundles.versions` (the applied versions), and
:mod:`~gateway.bundles.firmware` (images where they enter).
"""

from gateway.bundles.manifest import KINDS, BundleFile, Manifest, Version
from gateway.bundles.signing import build_bundle
from gateway.bundles.verify import (
    AuditSink,
    BundleVerifier,
    PayloadCheck,
    Trust,
    VerifiedBundle,
    looks_like_bundle,
    read_bundle,
)
from gateway.bundles.versions import AppliedVersions, version_key

__all__ = [
    "KINDS",
    "AppliedVersions",
    "AuditSink",
    "BundleFile",
    "BundleVerifier",
    "Manifest",
    "PayloadCheck",
    "Trust",
    "VerifiedBundle",
    "Version",
    "build_bundle",
    "looks_like_bundle",
    "read_bundle",
    "version_key",
]
