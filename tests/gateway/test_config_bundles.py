"""The config's bundles block: trusted keys and signers, each problem with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.bundles import AppliedVersions, BundleVerifier, Trust, build_bundle, keys
from gateway.config.config_bundle import config_check
from gateway.config.loader import load_config_text
from gateway.config.models import GatewayConfig
from gateway.errors import BundleRefused, ConfigError

HEAD = """\
gateway: {id: gw, site: s, line: l, state_dir: state}
devices:
  - name: dev
    protocol: modbus_tcp
    host: 127.0.0.1
    tags: [{name: sp, table: holding, address: 0, type: uint16}]
"""

BRAIN = keys.public_key_text(keys.generate_private_key().public_key())
ALGO = keys.generate_private_key().public_key()


def load(tmp_path: Path, block: str) -> GatewayConfig:
    return load_config_text(HEAD + block, "gw.yaml", tmp_path)


def problems(tmp_path: Path, block: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, block)
    return [str(p) for p in exc.value.problems]


def test_the_default_trusts_nothing_and_requires_nothing(tmp_path: Path) -> None:
    trust = load(tmp_path, "").bundles.trust()
    assert trust.keys == {} and trust.signers == {} and trust.require_signed is False


def test_keys_in_their_forms_and_signers_per_kind(tmp_path: Path) -> None:
    pem = keys.public_key_pem(ALGO).decode().replace("\n", "\n        ")
    cfg = load(tmp_path, f"""\
bundles:
  require_signed: true
  max_bytes: 32MiB
  keys:
    brain-release:
      public_key: {BRAIN}
      description: the brain's release key
    algo-team:
      public_key: |
        {pem}
  signers:
    firmware: [brain-release]
    model: [brain-release, algo-team]
""")
    trust = cfg.bundles.trust()
    assert set(trust.keys) == {"brain-release", "algo-team"}
    assert keys.raw_public_bytes(trust.keys["algo-team"]) == keys.raw_public_bytes(ALGO)
    assert trust.signers == {"firmware": frozenset({"brain-release"}),
                             "model": frozenset({"brain-release", "algo-team"})}
    assert trust.require_signed and trust.max_bytes == 32 * 2**20


def test_a_key_that_does_not_parse_is_named_at_its_line(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
bundles:
  keys:
    brain:
      public_key: c2hvcnQ=
    old:
      public_key: not a key at all
    "bad id":
      public_key: c2hvcnQ=
""")
    assert found[0].startswith("gw.yaml:10: bundles.keys.brain.public_key: not a public key")
    assert found[1].startswith("gw.yaml:12: bundles.keys.old.public_key: not a PEM block, an "
                               "OpenSSH line or base64")
    assert any(p.startswith("gw.yaml:13: bundles.keys.bad id")
               and "must start with a letter or digit" in p for p in found), found


def test_signers_name_trusted_keys_of_known_kinds(tmp_path: Path) -> None:
    found = problems(tmp_path, f"""\
bundles:
  keys:
    brain: {{public_key: {BRAIN}}}
  signers:
    firmware:
      - brain
      - brian
    plugin: [brain]
""")
    assert "gw.yaml:13: bundles.signers.firmware[1]: no key 'brian' in bundles.keys (keys: brain)" \
        in found
    assert any(p.startswith("gw.yaml:14: bundles.signers.plugin") for p in found), found


def test_one_key_one_id_and_signatures_need_a_key(tmp_path: Path) -> None:
    found = problems(tmp_path, f"""\
bundles:
  keys:
    brain: {{public_key: {BRAIN}}}
    again: {{public_key: {BRAIN}}}
""")
    assert found == ["gw.yaml:10: bundles.keys.again.public_key: the same public key as "
                     "'brain': one key, one id"]
    found = problems(tmp_path, "bundles: {require_signed: true}\n")
    assert len(found) == 1 and found[0].startswith(
        "gw.yaml:7: bundles.require_signed: signatures are required but no key is trusted")


# -- config bundles: the payload check of kind config -----------------------------------------


def config_bundle(tmp_path: Path, text: str, name: str = "gw") -> BundleRefused | None:
    key = keys.generate_private_key()
    data = build_bundle("config", name, "3", [("gateway.yaml", text.encode())], key, "brain")
    verifier = BundleVerifier(Trust({"brain": key.public_key()}, {"config": frozenset({"brain"})}),
                              AppliedVersions(tmp_path / "state"))
    try:
        verifier.verify(data, kind="config", source="test", check=config_check("gw", tmp_path))
    except BundleRefused as exc:
        assert exc.reason == "payload_mismatch"
        return exc
    return None


def test_a_config_bundle_carries_a_valid_config_for_this_gateway(tmp_path: Path) -> None:
    assert config_bundle(tmp_path, HEAD) is None
    other = config_bundle(tmp_path, HEAD, name="gw-2")
    assert other is not None and "a config for gateway 'gw-2'; this is 'gw'" in other.detail
    renamed = config_bundle(tmp_path, HEAD.replace("id: gw,", "id: gw-9,"))
    assert renamed is not None and "its config's gateway.id is 'gw-9'" in renamed.detail
    invalid = config_bundle(tmp_path, HEAD.replace("address: 0", "address: -1"))
    assert invalid is not None and "the bundle's config is invalid" in invalid.detail
    assert "gw 3:gateway.yaml:6: devices[0].tags[0].address" in invalid.detail


def test_a_config_that_trusts_no_key_does_not_load_cryptography(tmp_path: Path) -> None:
    """cryptography costs a process about 20 MB; only a config with bundle keys needs it
    (issue 21: import only what the config uses)."""
    import subprocess
    import sys

    trusting = HEAD + "bundles: {keys: {brain: {public_key: " + BRAIN + "}}}\n"
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "import gateway.runtime.gateway\n"
        "from gateway.config.loader import load_config_text\n"
        f"text = {HEAD!r}\n"
        f"load_config_text(text, 'gw.yaml', Path({str(tmp_path)!r}))\n"
        "print('without keys', 'cryptography' in sys.modules)\n"
        f"load_config_text({trusting!r}, 'gw.yaml', Path({str(tmp_path)!r}))\n"
        "print('with keys', 'cryptography' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["without keys False", "with keys True"]
