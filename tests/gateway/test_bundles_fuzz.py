"""Property-based fuzzing of the bundle reader: garbage bytes, tar-shaped garbage, mutated real
bundles and signed nonsense manifests. Nothing escapes but :class:`BundleRefused`, and a
bundle that passes carries exactly the files its signed manifest lists."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.bundles import AppliedVersions, BundleVerifier, Trust, archive, build_bundle, keys
from gateway.bundles.manifest import parse
from gateway.bundles.verify import Signature, read_bundle
from gateway.errors import BundleRefused

FUZZ = settings(derandomize=True, max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
KEY = keys.generate_private_key()
IMAGE = hashlib.sha256(b"image").digest() * 40
GOOD = build_bundle("firmware", "node-fw", "1.5.0", [("node.bin", IMAGE), ("notes.txt", b"hi")],
                    KEY, "brain")
TRUST = Trust({"brain": KEY.public_key()}, {"firmware": frozenset({"brain"})})


def check(tmp_path: Path, data: bytes) -> None:
    """Verify ``data``: a refusal, or a bundle whose files are the signed manifest's."""
    verifier = BundleVerifier(TRUST, AppliedVersions(tmp_path))
    try:
        bundle = verifier.verify(data, kind="firmware", source="fuzz")
    except BundleRefused as exc:
        assert exc.reason in {"malformed", "unsigned", "unknown_key", "bad_signature",
                              "wrong_kind", "key_not_allowed", "file_mismatch"}, exc.reason
        assert str(exc)
        return
    assert {f.name: f.sha256 for f in bundle.manifest.files} == {
        name: hashlib.sha256(body).hexdigest() for name, body in bundle.files.items()}
    assert dict(bundle.files) == {"node.bin": IMAGE, "notes.txt": b"hi"}


@FUZZ
@given(st.binary(max_size=4096))
def test_garbage_bytes(tmp_path: Path, data: bytes) -> None:
    check(tmp_path, data)


@FUZZ
@given(st.binary(min_size=512, max_size=2048))
def test_garbage_behind_the_ustar_magic(tmp_path: Path, data: bytes) -> None:
    check(tmp_path, data[:257] + b"ustar\x0000" + data[265:])


@st.composite
def tar_headers(draw: st.DrawFn) -> bytes:
    """A header with random fields but the right magic and checksum, then random data."""
    header = bytearray(draw(st.binary(min_size=512, max_size=512)))
    header[257:265] = draw(st.sampled_from([b"ustar\x0000", b"ustar  \x00"]))
    header[156:157] = draw(st.sampled_from([b"0", b"\0", b"5", b"x", b"g", b"L", b"\xff"]))
    if draw(st.booleans()):
        size = draw(st.integers(0, 2**33))
        header[124:136] = (b"%011o" % size)[-11:] + b"\0"
    if draw(st.booleans()):
        name = draw(st.sampled_from([b"manifest.json", b"manifest.sig", b"node.bin", b"../x",
                                     b"", b"a" * 100]))
        header[:100] = name.ljust(100, b"\0")
    header[148:156] = b"%06o\0 " % archive._checksum(bytes(header))
    body = draw(st.binary(max_size=1536))
    return bytes(header) + body


@FUZZ
@given(st.lists(tar_headers(), min_size=1, max_size=4), st.binary(max_size=1024))
def test_tar_shaped_garbage(tmp_path: Path, parts: list[bytes], tail: bytes) -> None:
    check(tmp_path, b"".join(parts) + tail)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), max_size=8),
       st.integers(0, len(GOOD)), st.binary(max_size=64))
def test_mutated_real_bundles(tmp_path: Path, flips: list[tuple[int, int]], cut: int,
                              inserted: bytes) -> None:
    data = bytearray(GOOD)
    for at, value in flips:
        data[at] = value
    check(tmp_path, bytes(data[:cut]) + inserted + bytes(data[cut:]))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=5),
    max_leaves=20)


@st.composite
def near_manifests(draw: st.DrawFn) -> dict[str, Any]:
    """The real manifest with keys changed to random JSON, dropped or added."""
    body: dict[str, Any] = json.loads(read_bundle(GOOD).manifest_bytes)
    for key in draw(st.lists(st.sampled_from([*body, "description", "other"]), max_size=3)):
        if draw(st.booleans()):
            body[key] = draw(JSON)
        else:
            body.pop(key, None)
    return body


@FUZZ
@given(near_manifests() | JSON)
def test_signed_nonsense_manifests(tmp_path: Path, body: Any) -> None:
    """What the right key signed is still parsed strictly: a signature vouches for the
    signer, not for the manifest's shape."""
    manifest = json.dumps(body).encode()
    signature = Signature("brain", keys.sign(KEY, manifest)).dump()
    entries = dict(archive.unpack(GOOD, len(GOOD)))
    entries.update({"manifest.json": manifest, "manifest.sig": signature})
    check(tmp_path, archive.pack(list(entries.items()), 0))
    try:
        parse(manifest)
    except BundleRefused as exc:
        assert exc.reason == "malformed"
