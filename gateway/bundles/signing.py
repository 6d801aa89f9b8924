"""Making a bundle: the brain side's half (``chenxing-gateway bundle sign``, and tests).

The manifest lists each file with its size and SHA-256 and is signed as the exact
bytes written to ``manifest.json`` (its canonical form, :func:`~gateway.bundles.manifest.dump`);
the archive holds ``manifest.json``, ``manifest.sig``, then the files in the order given.
A signature over the manifest rather than over the archive leaves the container's own
bytes (header fields, padding) out of what is trusted, and lets anyone check a bundle
with standard tools: ``tar xf`` it, then
``openssl pkeyutl -verify -pubin -inkey brain.pub -rawin -in manifest.json -sigfile sig.bin``
with the signature's base64 decoded into ``sig.bin``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from gateway.bundles import archive, keys
from gateway.bundles.manifest import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    BundleFile,
    Manifest,
    Version,
    dump,
)
from gateway.bundles.manifest import parse as parse_manifest
from gateway.bundles.verify import Signature
from gateway.errors import BundleRefused


def build_bundle(kind: str, name: str, version: str, files: Sequence[tuple[str, bytes]],
                 key: keys.PrivateKey, key_id: str, *, created: datetime | None = None,
                 description: str = "") -> bytes:
    """A signed bundle of ``files`` (name, bytes). Raise :class:`ValueError` when what it
    describes could not be verified (a bad name, version or kind): the builder never makes
    a bundle the gateway refuses as malformed."""
    when = (created or datetime.now(UTC)).replace(microsecond=0)
    try:
        manifest = Manifest(kind, name, Version.parse(version), when,
                            tuple(BundleFile(n, hashlib.sha256(b).hexdigest(), len(b))
                                  for n, b in files),
                            description)
        body = dump(manifest)
        parse_manifest(body)  # the verifier's own rules
        signature = Signature(key_id, keys.sign(key, body))
        Signature.parse(signature.dump())
    except BundleRefused as exc:
        raise ValueError(exc.detail) from None
    entries = [(MANIFEST_FILE, body), (SIGNATURE_FILE, signature.dump()), *files]
    return archive.pack(list(entries), max(0, int(when.timestamp())))
