"""A bundle's manifest: what it is (kind, name, version), when it was made, its files' hashes.

``manifest.json`` is the one thing signed. Its bytes are verified as they came (never
re-encoded first), then parsed strictly: unknown keys, a missing key, a name or version
of the wrong shape are refusals (reason ``malformed``). :func:`dump` writes the
canonical form the CLI signs (sorted keys, no spaces, UTF-8)::

    {"created":"2025-06-01T08:00:00Z","files":[{"name":"node-1.5.0.bin",
     "sha256":"<64 hex>","size":49152}],"format":"chenxing-bundle/1",
     "kind":"firmware","name":"spindle-node","version":"1.5.0"}

``version`` is one to four dot-separated decimal numbers (``1.5.0``, ``2024.6.1.7``),
compared as numbers with missing parts as zeros (``1.5`` equals ``1.5.0``, ``1.10``
is newer than ``1.9``): the order the replay check needs, with no room for a string
ordering that makes ``1.10`` older.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.bundles.archive import NAME_RE
from gateway.errors import BundleRefused

FORMAT = "chenxing-bundle/1"
#: what a bundle may carry: a gateway config, a model package (.onnx + manifest), an MCU image
KINDS = ("config", "model", "firmware")
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
#: a bundle's name: the gateway id (config), the model's name (model), the image's (firmware)
BUNDLE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
_VERSION_RE = re.compile(r"^(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,3}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_MANIFEST_BYTES = 64 * 1024
_KEYS = {"format", "kind", "name", "version", "created", "files", "description"}
_FILE_KEYS = {"name", "sha256", "size"}


@dataclass(frozen=True, slots=True, order=True)
class Version:
    """A bundle version as numbers: ``1.5`` == ``1.5.0`` < ``1.10``."""

    parts: tuple[int, int, int, int]
    text: str = field(compare=False)

    @classmethod
    def parse(cls, text: object) -> Version:
        if not isinstance(text, str) or not _VERSION_RE.match(text):
            raise ValueError(f"version {text!r} is not 1 to 4 dot-separated numbers (e.g. 1.5.0)")
        numbers = [int(p) for p in text.split(".")]
        padded = (*numbers, 0, 0, 0)
        return cls((padded[0], padded[1], padded[2], padded[3]), text)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class BundleFile:
    """One payload file as the manifest lists it."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    """The signed description of a bundle."""

    kind: str
    name: str
    version: Version
    created: datetime
    files: tuple[BundleFile, ...]
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "format": FORMAT, "kind": self.kind, "name": self.name,
            "version": self.version.text, "created": _iso(self.created),
            "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in self.files],
        }
        if self.description:
            body["description"] = self.description
        return body


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def dump(manifest: Manifest) -> bytes:
    """The canonical bytes of ``manifest`` (what ``bundle sign`` signs)."""
    return json.dumps(manifest.as_dict(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def _refuse(detail: str) -> BundleRefused:
    return BundleRefused("malformed", f"manifest.json: {detail}")


def parse(data: bytes) -> Manifest:
    """The manifest in ``data``; raise :class:`BundleRefused` (``malformed``) naming the
    first key that is missing, unknown or of the wrong shape."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise _refuse(f"{len(data)} bytes, more than {MAX_MANIFEST_BYTES}")
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _refuse(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _refuse("not a JSON object")
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise _refuse(f"unknown key(s) {', '.join(map(repr, unknown))}")
    missing = sorted(_KEYS - {"description"} - set(body))
    if missing:
        raise _refuse(f"missing key(s) {', '.join(map(repr, missing))}")
    if body["format"] != FORMAT:
        raise _refuse(f"format {body['format']!r}, this gateway reads {FORMAT!r}")
    kind, name = body["kind"], body["name"]
    if kind not in KINDS:
        raise _refuse(f"kind {kind!r} is none of {', '.join(KINDS)}")
    if not isinstance(name, str) or not BUNDLE_NAME_RE.match(name):
        raise _refuse(f"name {name!r}: letters, digits, _ and -, at most 64")
    try:
        version = Version.parse(body["version"])
    except ValueError as exc:
        raise _refuse(str(exc)) from None
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 1000:
        raise _refuse("description must be a string of at most 1000 characters")
    return Manifest(kind, name, version, _created(body["created"]), _files(body["files"]),
                    description)


def _created(value: Any) -> datetime:
    try:
        if not isinstance(value, str) or len(value) > 40:
            raise ValueError
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _refuse(f"created {value!r} is not an ISO 8601 time such as "
                      "2025-06-01T08:00:00Z") from None
    if when.tzinfo is None:
        raise _refuse(f"created {value!r} has no time zone (end it with Z)")
    try:
        return when.astimezone(UTC)
    except OverflowError:
        raise _refuse(f"created {value!r} is out of range") from None


def _files(value: Any) -> tuple[BundleFile, ...]:
    if not isinstance(value, list) or not value:
        raise _refuse("files must be a non-empty list")
    files: list[BundleFile] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != _FILE_KEYS:
            raise _refuse(f"files[{i}] must have exactly the keys name, sha256 and size")
        name, sha256, size = item["name"], item["sha256"], item["size"]
        if (not isinstance(name, str) or not NAME_RE.match(name)
                or name in (MANIFEST_FILE, SIGNATURE_FILE)):
            raise _refuse(f"files[{i}].name {name!r} is not a flat file name of the payload")
        if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
            raise _refuse(f"files[{i}].sha256 must be 64 lower-case hex digits")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise _refuse(f"files[{i}].size must be a whole number of bytes")
        if any(f.name == name for f in files):
            raise _refuse(f"files[{i}].name {name!r} is listed twice")
        files.append(BundleFile(name, sha256, size))
    return tuple(files)
