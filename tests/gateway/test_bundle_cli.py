"""``chenxing-gateway bundle keygen|sign|verify``: keys made by the command, the config snippet it
prints trusted as printed, bundles signed and verified against that config."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from firmware_bridge.image import build_image
from gateway import exit_codes
from gateway.bundles import AppliedVersions, Version, keys
from gateway.cli.main import main

REFERENCE = Path(__file__).resolve().parents[2] / "edge_models" / "reference"

HEAD = """\
gateway: {{id: gw-7, site: s, line: l, state_dir: {state}}}
devices:
  - name: spindle-node
    protocol: mcu_node
    port: /dev/null
    node_id: 6
    tags: [{{name: temperature, sensor: temperature, unit: degC}}]
"""


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["bundle", *args], env=env, catch_exceptions=False)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """A key made by keygen and a config trusting it with keygen's own snippet."""
    key = tmp_path / "brain-release.key"
    made = run("keygen", "-o", str(key))
    assert made.exit_code == 0, made.output
    snippet = made.output[made.output.index("bundles:"):]
    snippet = snippet.replace("    firmware: [brain-release]",
                              "    firmware: [brain-release]\n    model: [brain-release]\n"
                              "    config: [brain-release]")
    config = tmp_path / "gateway.yaml"
    config.write_text(HEAD.format(state=tmp_path / "state") + snippet)
    return key, config


def test_keygen_writes_a_0600_key_and_never_overwrites_it(tmp_path: Path,
                                                         setup: tuple[Path, Path]) -> None:
    key, _ = setup
    assert key.stat().st_mode & 0o777 == 0o600
    public = keys.load_public_key(key.with_suffix(".pub").read_text())
    private = keys.load_private_key(key)
    assert keys.raw_public_bytes(private.public_key()) == keys.raw_public_bytes(public)
    again = run("keygen", "-o", str(key))
    assert again.exit_code == exit_codes.CONFIG_INVALID
    assert "exists: a private key is never overwritten" in again.output
    assert keys.load_private_key(key).private_bytes_raw() == private.private_bytes_raw()


def test_sign_then_verify_a_firmware_bundle(tmp_path: Path, setup: tuple[Path, Path]) -> None:
    key, config = setup
    image = tmp_path / "node-1.5.0.bin"
    image.write_bytes(build_image((1, 5, 0), 4096))
    bundle = tmp_path / "node-1.5.0.bundle"
    signed = run("sign", "--key", str(key), "--kind", "firmware", "--name", "node-fw",
                 "--version", "1.5.0", "--description", "ADC fix", "-o", str(bundle), str(image))
    assert signed.exit_code == 0, signed.output
    assert "firmware bundle node-fw 1.5.0, 1 file(s)" in signed.output
    with tarfile.open(bundle) as tar:
        assert tar.getnames() == ["manifest.json", "manifest.sig", "node-1.5.0.bin"]
    ok = run("verify", "-c", str(config), "--device", "spindle-node", str(bundle))
    assert ok.exit_code == 0, ok.output
    assert "manifest.json: firmware node-fw 1.5.0, created " in ok.output
    assert "(ADC fix)" in ok.output and "node-1.5.0.bin  4096 bytes  sha256 " in ok.output
    assert "verified: firmware bundle node-fw 1.5.0 signed by brain-release" in ok.output
    # without a device the image is not checked, and it says so
    assert "note: no --device" in run("verify", "-c", str(config), str(bundle)).output
    # verify records nothing: the same bundle verifies again
    assert not (tmp_path / "state" / "bundles" / "applied.json").exists()
    # once the device got 1.5.0 from a bundle, the same bundle is a replay
    AppliedVersions(tmp_path / "state").record("firmware/node-fw@spindle-node",
                                               Version.parse("1.5.0"))
    stale = run("verify", "-c", str(config), "--device", "spindle-node", str(bundle))
    assert stale.exit_code == exit_codes.BUNDLE_REFUSED
    assert "REFUSED (stale_version): firmware node-fw version 1.5.0 is not newer than 1.5.0" \
        in stale.output


def test_verify_says_why_it_refuses(tmp_path: Path, setup: tuple[Path, Path]) -> None:
    key, config = setup
    image = tmp_path / "node.bin"
    image.write_bytes(build_image((1, 5, 0), 4096))
    wrong = tmp_path / "wrong.bundle"
    assert run("sign", "--key", str(key), "--kind", "firmware", "--name", "node-fw", "--version",
               "1.6.0", "-o", str(wrong), str(image)).exit_code == 0
    refused = run("verify", "-c", str(config), "--device", "spindle-node", str(wrong))
    assert refused.exit_code == exit_codes.BUNDLE_REFUSED
    assert ("REFUSED (payload_mismatch): the image's header says version 1.5.0, the manifest "
            "1.6.0") in refused.output
    # a stranger's key
    stranger = tmp_path / "stranger.key"
    assert run("keygen", "-o", str(stranger)).exit_code == 0
    foreign = tmp_path / "foreign.bundle"
    assert run("sign", "--key", str(stranger), "--kind", "firmware", "--name", "node-fw",
               "--version", "1.5.0", "-o", str(foreign), str(image)).exit_code == 0
    refused = run("verify", "-c", str(config), str(foreign))
    assert "REFUSED (unknown_key): signed by key 'stranger'" in refused.output
    # a tampered bundle, a file that is no bundle
    assert run("sign", "--key", str(key), "--kind", "firmware", "--name", "node-fw",
               "--version", "1.5.0", "-o", str(foreign), str(image)).exit_code == 0
    data = bytearray(foreign.read_bytes())
    data[data.index(b'"1.5.0"') + 1] = ord("9")
    tampered = tmp_path / "tampered.bundle"
    tampered.write_bytes(bytes(data))
    assert "REFUSED (bad_signature)" in run("verify", "-c", str(config), str(tampered)).output
    refused = run("verify", "-c", str(config), str(image))
    assert refused.exit_code == exit_codes.BUNDLE_REFUSED
    assert "REFUSED (malformed): not a bundle: no tar (ustar) header" in refused.output


def test_model_and_config_bundles(tmp_path: Path, setup: tuple[Path, Path]) -> None:
    key, config = setup
    model = tmp_path / "quality.bundle"
    assert run("sign", "--key", str(key), "--kind", "model", "--name", "quality", "--version",
               "1.0.0", "-o", str(model), str(REFERENCE / "quality.yaml"),
               str(REFERENCE / "quality.onnx")).exit_code == 0
    ok = run("verify", "-c", str(config), str(model))
    assert "verified: model bundle quality 1.0.0" in ok.output, ok.output
    refused = run("verify", "-c", str(config), "--kind", "config", str(model))
    assert "REFUSED (wrong_kind): a model bundle where a config bundle is expected" \
        in refused.output
    gateway_yaml = tmp_path / "next.yaml"
    gateway_yaml.write_text(config.read_text())
    bundle = tmp_path / "config.bundle"
    assert run("sign", "--key", str(key), "--kind", "config", "--name", "gw-7", "--version", "12",
               "-o", str(bundle), str(gateway_yaml)).exit_code == 0
    assert "verified: config bundle gw-7 12" in run("verify", "-c", str(config),
                                                    str(bundle)).output


def test_sign_refuses_bad_input(tmp_path: Path) -> None:
    key = tmp_path / "locked.key"
    made = run("keygen", "-o", str(key), "--passphrase-env", "KEY_PASS",
               env={"KEY_PASS": "s3cret"})
    assert made.exit_code == 0, made.output
    payload = tmp_path / "x.bin"
    payload.write_bytes(b"x")
    out = tmp_path / "x.bundle"
    common = ["--kind", "firmware", "--name", "x", "-o", str(out), str(payload)]
    locked = run("sign", "--key", str(key), "--version", "1", *common)
    assert locked.exit_code == exit_codes.CONFIG_INVALID and "encrypted" in locked.output
    assert run("sign", "--key", str(key), "--version", "1", "--passphrase-env", "KEY_PASS",
               *common, env={"KEY_PASS": "s3cret"}).exit_code == 0
    bad = run("sign", "--key", str(key), "--version", "v2", "--passphrase-env", "KEY_PASS",
              *common, env={"KEY_PASS": "s3cret"})
    assert bad.exit_code == exit_codes.CONFIG_INVALID
    assert re.search(r"version 'v2' is not 1 to 4 dot-separated numbers", bad.output)
    with tarfile.open(out) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None and json.loads(member.read())["version"] == "1"
