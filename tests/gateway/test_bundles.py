"""Signed bundles (gateway/bundles/): real Ed25519 keys made here, every refusal reason with its
audit line, versions that survive a restart, and second opinions on the bytes: libsodium
(PyNaCl) on the signatures, GNU tar and Python's tarfile on the container."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
import pytest

from gateway.bundles import (
    AppliedVersions,
    BundleVerifier,
    Trust,
    VerifiedBundle,
    Version,
    archive,
    build_bundle,
    keys,
    looks_like_bundle,
    read_bundle,
)
from gateway.bundles.manifest import dump, parse
from gateway.bundles.verify import Signature
from gateway.commands.audit import AuditLog
from gateway.errors import BundleRefused

IMAGE = bytes(range(256)) * 40


class Audit:
    """Collects audit records (the verifier's sink); the real AuditLog is tested below."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def record(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields})


@pytest.fixture
def brain() -> keys.PrivateKey:
    return keys.generate_private_key()


@pytest.fixture
def other() -> keys.PrivateKey:
    return keys.generate_private_key()


def trust(brain: keys.PrivateKey, other: keys.PrivateKey | None = None, **kw: Any) -> Trust:
    known = {"brain": brain.public_key()}
    if other is not None:
        known["algo"] = other.public_key()
    signers = kw.pop("signers", {"firmware": frozenset({"brain"}), "model": frozenset({"brain"}),
                                 "config": frozenset({"brain"})})
    return Trust(known, signers, **kw)


def firmware(key: keys.PrivateKey, version: str = "1.5.0", key_id: str = "brain",
             files: list[tuple[str, bytes]] | None = None, **kw: Any) -> bytes:
    return build_bundle("firmware", "node-fw", version, files or [("node.bin", IMAGE)], key,
                        key_id, **kw)


def verifier(tmp_path: Path, t: Trust) -> tuple[BundleVerifier, Audit]:
    audit = Audit()
    return BundleVerifier(t, AppliedVersions(tmp_path / "state"), audit), audit


def refused(v: BundleVerifier, data: bytes, kind: str = "firmware", **kw: Any) -> BundleRefused:
    with pytest.raises(BundleRefused) as exc:
        v.verify(data, kind=kind, source="test", **kw)
    return exc.value


def rebuild(data: bytes, change: dict[str, bytes | None]) -> bytes:
    """The bundle's entries with some replaced (bytes), dropped (None) or added."""
    entries = dict(archive.unpack(data, len(data)))
    for name, body in change.items():
        if body is None:
            entries.pop(name)
        else:
            entries[name] = body
    return archive.pack(list(entries.items()), 0)


# -- what verifies ---------------------------------------------------------------------------


def test_a_signed_bundle_verifies_and_holds_its_files(tmp_path: Path,
                                                      brain: keys.PrivateKey) -> None:
    data = firmware(brain, description="spindle node, fixes the ADC drift")
    assert looks_like_bundle(data) and not looks_like_bundle(IMAGE)
    v, audit = verifier(tmp_path, trust(brain))
    bundle = v.verify(data, kind="firmware", source="test", scope="node-a")
    assert bundle.files == {"node.bin": IMAGE}
    assert bundle.key_id == "brain" and bundle.version == Version.parse("1.5.0")
    assert bundle.version_key == "firmware/node-fw@node-a"
    assert bundle.sha256 == hashlib.sha256(data).hexdigest()
    assert bundle.manifest.description == "spindle node, fixes the ADC drift"
    assert audit.lines == [{"event": "bundle", "outcome": "verified", "kind": "firmware",
                            "source": "test", "sha256": bundle.sha256, "size": len(data),
                            "key": "brain", "name": "node-fw", "version": "1.5.0"}]


def test_the_signature_is_libsodiums_ed25519_over_the_manifest_bytes(
        brain: keys.PrivateKey) -> None:
    """A second opinion: libsodium (PyNaCl), not OpenSSL, verifies what the gateway signed,
    and signs what the gateway verifies (Ed25519 is deterministic: the same bytes)."""
    raw = read_bundle(firmware(brain))
    assert raw.signature_bytes is not None
    signature = Signature.parse(raw.signature_bytes)
    public = nacl.signing.VerifyKey(keys.raw_public_bytes(brain.public_key()))
    assert public.verify(raw.manifest_bytes, signature.signature) == raw.manifest_bytes
    with pytest.raises(nacl.exceptions.BadSignatureError):
        public.verify(raw.manifest_bytes + b" ", signature.signature)
    # libsodium signs with the same seed: byte for byte the same signature, accepted
    from cryptography.hazmat.primitives import serialization

    seed = brain.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                               serialization.NoEncryption())
    sodium = nacl.signing.SigningKey(seed)
    assert sodium.sign(raw.manifest_bytes).signature == signature.signature
    assert keys.signature_valid(brain.public_key(), sodium.sign(b"other").signature, b"other")


def test_a_bundle_signed_by_libsodium_verifies(tmp_path: Path, brain: keys.PrivateKey) -> None:
    """The brain side may sign with any Ed25519 library: a manifest signed by libsodium."""
    sodium = nacl.signing.SigningKey.generate()
    public = keys.load_public_key(base64.b64encode(bytes(sodium.verify_key)).decode())
    manifest = parse(read_bundle(firmware(brain)).manifest_bytes)
    body = dump(manifest)
    sig = Signature("sodium", sodium.sign(body).signature).dump()
    data = archive.pack([("manifest.json", body), ("manifest.sig", sig), ("node.bin", IMAGE)], 0)
    v, _ = verifier(tmp_path, Trust({"sodium": public}, {"firmware": frozenset({"sodium"})}))
    assert v.verify(data, kind="firmware", source="test").key_id == "sodium"


def test_gnu_tar_and_tarfile_read_the_container_and_tar_makes_one_we_read(
        tmp_path: Path, brain: keys.PrivateKey) -> None:
    data = firmware(brain)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        assert tar.getnames() == ["manifest.json", "manifest.sig", "node.bin"]
        member = tar.extractfile("node.bin")
        assert member is not None and member.read() == IMAGE
    gnu_tar = shutil.which("tar")
    assert gnu_tar is not None
    (tmp_path / "b.tar").write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([gnu_tar, "xf", str(tmp_path / "b.tar"), "-C", str(out)], check=True)
    assert (out / "node.bin").read_bytes() == IMAGE
    # repacked by GNU tar (ustar, the other order): the same bundle to the verifier
    again = tmp_path / "again.tar"
    subprocess.run([gnu_tar, "--format=ustar", "-cf", str(again), "-C", str(out),
                    "node.bin", "manifest.sig", "manifest.json"], check=True)
    v, _ = verifier(tmp_path, trust(brain))
    assert v.verify(again.read_bytes(), kind="firmware", source="test").files == {
        "node.bin": IMAGE}


# -- every refusal, with its audit line --------------------------------------------------------


def test_unsigned(tmp_path: Path, brain: keys.PrivateKey) -> None:
    v, audit = verifier(tmp_path, trust(brain))
    exc = refused(v, rebuild(firmware(brain), {"manifest.sig": None}))
    assert exc.reason == "unsigned" and "no manifest.sig" in exc.detail
    assert audit.lines[-1]["outcome"] == "refused" and audit.lines[-1]["reason"] == "unsigned"
    # a raw payload where signatures are required
    exc = v.refuse_unsigned(kind="firmware", source="test", what="the image")
    assert exc.reason == "unsigned" and "bundles.require_signed" in exc.detail
    assert audit.lines[-1] == {"event": "bundle", "outcome": "refused", "kind": "firmware",
                               "source": "test", "reason": "unsigned", "detail": exc.detail}


def test_bad_signature(tmp_path: Path, brain: keys.PrivateKey, other: keys.PrivateKey) -> None:
    v, audit = verifier(tmp_path, trust(brain))
    data = firmware(brain)
    raw = read_bundle(data)
    # the manifest altered after signing (a newer version claimed)
    forged = raw.manifest_bytes.replace(b'"1.5.0"', b'"9.5.0"')
    exc = refused(v, rebuild(data, {"manifest.json": forged}))
    assert exc.reason == "bad_signature" and "does not verify" in exc.detail
    # signed by another key under the trusted id
    exc = refused(v, firmware(other, key_id="brain"))
    assert exc.reason == "bad_signature"
    # one bit of the signature flipped
    assert raw.signature_bytes is not None
    sig = Signature.parse(raw.signature_bytes)
    flipped = Signature(sig.key_id, bytes([sig.signature[0] ^ 1]) + sig.signature[1:]).dump()
    assert refused(v, rebuild(data, {"manifest.sig": flipped})).reason == "bad_signature"
    assert [a["reason"] for a in audit.lines] == ["bad_signature"] * 3


def test_unknown_key(tmp_path: Path, brain: keys.PrivateKey, other: keys.PrivateKey) -> None:
    v, audit = verifier(tmp_path, trust(brain))
    exc = refused(v, firmware(other, key_id="stranger"))
    assert exc.reason == "unknown_key" and "'stranger'" in exc.detail and "brain" in exc.detail
    assert audit.lines[-1]["key"] == "stranger"


def test_key_not_allowed_for_the_kind(tmp_path: Path, brain: keys.PrivateKey,
                                      other: keys.PrivateKey) -> None:
    t = trust(brain, other, signers={"firmware": frozenset({"brain"}),
                                     "model": frozenset({"algo"})})
    v, audit = verifier(tmp_path, t)
    exc = refused(v, firmware(other, key_id="algo"))
    assert exc.reason == "key_not_allowed"
    assert "'algo' may not sign firmware" in exc.detail and "bundles.signers.firmware" in exc.detail
    # no signer for a kind: nobody may sign it
    config = build_bundle("config", "gw-1", "1", [("gw.yaml", b"x")], brain, "brain")
    assert refused(v, config, kind="config").reason == "key_not_allowed"
    assert audit.lines[-1]["reason"] == "key_not_allowed"


def test_wrong_kind(tmp_path: Path, brain: keys.PrivateKey) -> None:
    v, _ = verifier(tmp_path, trust(brain))
    exc = refused(v, firmware(brain), kind="model")
    assert exc.reason == "wrong_kind" and "a firmware bundle where a model" in exc.detail


@pytest.mark.parametrize("change, detail", [
    ({"node.bin": IMAGE[:-1] + b"\x00"}, "node.bin: SHA-256"),
    ({"node.bin": IMAGE + b"!"}, "bytes, the manifest says"),
    ({"node.bin": None}, "listed in the manifest, not in the bundle"),
    ({"extra.bin": b"smuggled"}, "not in the manifest: extra.bin"),
])
def test_file_mismatch(tmp_path: Path, brain: keys.PrivateKey, change: dict[str, bytes | None],
                       detail: str) -> None:
    v, audit = verifier(tmp_path, trust(brain))
    exc = refused(v, rebuild(firmware(brain), change))
    assert exc.reason == "file_mismatch" and detail in exc.detail
    assert audit.lines[-1]["reason"] == "file_mismatch"


def test_payload_mismatch_from_the_kinds_check(tmp_path: Path, brain: keys.PrivateKey) -> None:
    v, audit = verifier(tmp_path, trust(brain))

    def check(bundle: VerifiedBundle) -> None:
        raise BundleRefused("payload_mismatch", f"{bundle.name}: the image says 1.4.0")

    exc = refused(v, firmware(brain), check=check)
    assert exc.reason == "payload_mismatch" and audit.lines[-1]["detail"] == exc.detail


def test_stale_and_replayed_versions_also_after_a_restart(tmp_path: Path,
                                                         brain: keys.PrivateKey) -> None:
    v, audit = verifier(tmp_path, trust(brain))
    first = firmware(brain, "1.5.0")
    bundle = v.verify(first, kind="firmware", source="test", scope="node-a")
    v.applied(bundle, "test")
    assert audit.lines[-1] == {"event": "bundle", "outcome": "applied", "kind": "firmware",
                               "name": "node-fw", "version": "1.5.0", "key": "brain",
                               "sha256": bundle.sha256, "source": "test"}
    # a restart: a new verifier on the same state dir
    v, audit = verifier(tmp_path, trust(brain))
    for data, what in ((first, "replayed"), (firmware(brain, "1.4.9"), "older"),
                       (firmware(brain, "1.5"), "equal: 1.5 is 1.5.0")):
        exc = refused(v, data, scope="node-a")
        assert exc.reason == "stale_version", what
        assert "is not newer than 1.5.0, applied before on node-a" in exc.detail
    # the version is the device's: another node takes the same bundle
    assert v.verify(first, kind="firmware", source="test", scope="node-b").name == "node-fw"
    # numbers, not strings: 1.10 is newer than 1.9
    newer = v.verify(firmware(brain, "1.10.0"), kind="firmware", source="test", scope="node-a")
    v.applied(newer, "test")
    assert refused(v, firmware(brain, "1.9.0"), scope="node-a").reason == "stale_version"
    state = json.loads((tmp_path / "state" / "bundles" / "applied.json").read_text())
    assert state["applied"]["firmware/node-fw@node-a"]["version"] == "1.10.0"
    # recording an older version never moves one back
    v.applied(bundle, "test")
    assert v.versions.last("firmware/node-fw@node-a") == Version.parse("1.10.0")


def test_an_unreadable_versions_file_refuses_everything(tmp_path: Path,
                                                       brain: keys.PrivateKey) -> None:
    path = tmp_path / "state" / "bundles" / "applied.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    v, audit = verifier(tmp_path, trust(brain))
    exc = refused(v, firmware(brain))
    assert exc.reason == "state_unreadable" and str(path) in exc.detail
    path.write_text(json.dumps({"format": 1, "applied": {"firmware/x": {"version": "one"}}}))
    assert refused(v, firmware(brain)).reason == "state_unreadable"
    assert audit.lines[-1]["reason"] == "state_unreadable"


@pytest.mark.parametrize("data, detail", [
    (b"", "no tar (ustar) header"),
    (IMAGE, "no tar (ustar) header"),
    (b"\0" * 10240, "no tar (ustar) header"),
])
def test_malformed(tmp_path: Path, brain: keys.PrivateKey, data: bytes, detail: str) -> None:
    v, audit = verifier(tmp_path, trust(brain))
    exc = refused(v, data)
    assert exc.reason == "malformed" and detail in exc.detail
    assert audit.lines[-1]["reason"] == "malformed"


def test_malformed_archives_and_manifests(tmp_path: Path, brain: keys.PrivateKey) -> None:
    v, _ = verifier(tmp_path, trust(brain))
    good = firmware(brain)
    # the header checksum
    broken = bytearray(good)
    broken[0] ^= 0x01
    assert "checksum" in refused(v, bytes(broken)).detail
    # not a regular file: a symbolic link entry
    link = bytearray(good)
    link[156] = ord("2")
    link[148:156] = b"%06o\0 " % archive._checksum(bytes(link[:512]))
    assert "regular files only" in refused(v, bytes(link)).detail
    # a path, not a flat name (GNU tar with a folder)
    out = tmp_path / "tree"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "x.bin").write_bytes(b"x")
    tar_path = tmp_path / "tree.tar"
    subprocess.run(["tar", "--format=ustar", "-cf", str(tar_path), "-C", str(out), "sub/x.bin"],
                   check=True)
    assert "file names are flat" in refused(v, tar_path.read_bytes()).detail
    # bytes after the end, a truncated archive, too big
    assert "after the end" in refused(v, good + b"junk").detail
    assert "the archive ends first" in refused(v, good[:700]).detail
    small, _ = verifier(tmp_path, trust(brain, max_bytes=1024))
    assert "more than the 1024 allowed" in refused(small, good).detail
    # no manifest; a manifest that is not JSON, an unknown key, a bad version
    assert "no manifest.json" in refused(v, rebuild(good, {"manifest.json": None})).detail
    sig = read_bundle(good).signature_bytes
    assert sig is not None

    def signed(manifest: bytes) -> bytes:
        s = Signature("brain", keys.sign(brain, manifest)).dump()
        return rebuild(good, {"manifest.json": manifest, "manifest.sig": s})

    assert "not JSON" in refused(v, signed(b"{")).detail
    body = json.loads(read_bundle(good).manifest_bytes)
    for change, detail in (({"extra": 1}, "unknown key(s) 'extra'"),
                           ({"version": "1.5.0-rc1"}, "not 1 to 4 dot-separated numbers"),
                           ({"version": "01.5"}, "not 1 to 4"),
                           ({"created": "2025-06-01T08:00:00"}, "no time zone"),
                           ({"format": "chenxing-bundle/2"}, "this gateway reads"),
                           ({"kind": "plugin"}, "kind 'plugin' is none of"),
                           ({"name": "../etc"}, "name '../etc'"),
                           ({"files": []}, "non-empty list")):
        exc = refused(v, signed(json.dumps({**body, **change}).encode()))
        assert exc.reason == "malformed" and detail in exc.detail, (change, exc.detail)
    # a signature file that is not one
    for text, detail in ((b"[]", "exactly algorithm, key and signature"),
                         (json.dumps({"algorithm": "rsa", "key": "brain",
                                      "signature": ""}).encode(), "only 'ed25519'"),
                         (json.dumps({"algorithm": "ed25519", "key": "brain",
                                      "signature": "AAAA"}).encode(), "of 3 bytes")):
        exc = refused(v, rebuild(good, {"manifest.sig": text}))
        assert exc.reason == "malformed" and detail in exc.detail


def test_the_real_audit_log_gets_a_line_per_outcome(tmp_path: Path,
                                                    brain: keys.PrivateKey) -> None:
    log = AuditLog(tmp_path / "audit.log")
    v = BundleVerifier(trust(brain), AppliedVersions(tmp_path / "state"), log)
    v.applied(v.verify(firmware(brain), kind="firmware", source="test"), "test")
    with pytest.raises(BundleRefused):
        v.verify(firmware(brain), kind="firmware", source="test")
    log.close()
    lines = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [(e["event"], e["outcome"], e.get("reason")) for e in lines] == [
        ("bundle", "verified", None), ("bundle", "applied", None),
        ("bundle", "refused", "stale_version")]
    assert all(isinstance(e["ts"], int) for e in lines)


# -- keys and building -------------------------------------------------------------------------


def test_public_keys_in_every_accepted_form(brain: keys.PrivateKey) -> None:
    from cryptography.hazmat.primitives import serialization

    public = brain.public_key()
    raw = keys.raw_public_bytes(public)
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    ssh = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    for text in (keys.public_key_text(public), base64.b64encode(der).decode(),
                 keys.public_key_pem(public).decode(), ssh.decode() + " engineer@box"):
        assert keys.raw_public_bytes(keys.load_public_key(text)) == raw
    for text, detail in (("not base64!", "not a PEM block"),
                         (base64.b64encode(b"short").decode(), "not a public key"),
                         ("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
                          "not a public key")):
        with pytest.raises(ValueError, match=detail):
            keys.load_public_key(text)


def test_an_rsa_key_is_named_as_such() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(ValueError, match="RSAPublicKey key, not Ed25519"):
        keys.load_public_key(pem)


def test_private_key_file_is_0600_never_overwritten_and_may_be_encrypted(
        tmp_path: Path, brain: keys.PrivateKey) -> None:
    path = tmp_path / "brain.key"
    keys.write_private_key(brain, path, b"correct horse")
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        keys.write_private_key(brain, path)
    loaded = keys.load_private_key(path, b"correct horse")
    assert keys.raw_public_bytes(loaded.public_key()) == keys.raw_public_bytes(brain.public_key())
    with pytest.raises(ValueError):
        keys.load_private_key(path)  # encrypted, no passphrase
    with pytest.raises(ValueError):
        keys.load_private_key(path, b"wrong")


def test_the_builder_refuses_what_the_verifier_would(brain: keys.PrivateKey) -> None:
    for kw, detail in (({"version": "v1"}, "dot-separated"), ({"name": "a b"}, "name 'a b'"),
                       ({"files": [("a/b", b"")]}, "flat")):
        args: dict[str, Any] = {"kind": "firmware", "name": "fw", "version": "1",
                                "files": [("x.bin", b"x")], **kw}
        with pytest.raises(ValueError, match=detail):
            build_bundle(args["kind"], args["name"], args["version"], args["files"], brain, "k")


def test_versions_compare_as_numbers() -> None:
    v = Version.parse
    assert v("1.10") > v("1.9") and v("1.5") == v("1.5.0.0") and v("2") > v("1.99.99.99")
    assert str(v("1.5")) == "1.5"
    created = parse(read_bundle(firmware(keys.generate_private_key(),
                                         created=datetime(2025, 6, 1, 8, tzinfo=UTC)))
                    .manifest_bytes).created
    assert created == datetime(2025, 6, 1, 8, tzinfo=UTC)
