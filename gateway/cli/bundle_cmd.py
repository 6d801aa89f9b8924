"""``chenxing-gateway bundle keygen|sign|verify``: signed bundles for the brain side and engineers.

- ``keygen`` makes an Ed25519 key pair: the private key (PKCS#8 PEM, 0600, optionally
  encrypted) and the public key (PEM), and prints the ``bundles.keys`` entry to trust it.
- ``sign`` builds a bundle of kind config, model or firmware from files and signs it.
- ``verify`` checks a bundle against a gateway config's trusted keys, its signers, the
  kind's payload check and the versions applied on that gateway (read-only: nothing is
  recorded or audited), and prints the manifest and, when refused, why.

See docs/bundles.md. Exit codes: 0 done (verify: the gateway would accept it), 1 bad
input (config, key file, files), 7 verify: the bundle would be refused.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from gateway import exit_codes
from gateway.bundles import KINDS, AppliedVersions, BundleVerifier, PayloadCheck, build_bundle
from gateway.bundles import keys as bundle_keys
from gateway.bundles.manifest import MANIFEST_FILE
from gateway.bundles.manifest import parse as parse_manifest
from gateway.bundles.verify import read_bundle
from gateway.config.loader import load_config
from gateway.config.models import GatewayConfig
from gateway.errors import BundleRefused, ConfigError


class _BadInput(click.ClickException):
    """A key, file or config this command cannot use (exit 1)."""

    exit_code = exit_codes.CONFIG_INVALID


def _passphrase(env: str | None) -> bytes | None:
    if env is None:
        return None
    value = os.environ.get(env)
    if not value:
        raise _BadInput(f"environment variable {env} (the passphrase) is not set")
    return value.encode()


_PASSPHRASE = click.option(
    "--passphrase-env", metavar="VAR", default=None,
    help="the private key's passphrase is in this environment variable")


@click.group()
def bundle() -> None:
    """Signed bundles: make keys, sign configs, model packages and firmware, verify them."""


@bundle.command("keygen")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="private key file to write (PEM, mode 0600); the public key goes beside it "
              "as .pub")
@click.option("--key-id", default=None, help="the key's id in the config (default: the file "
              "name without its suffix)")
@_PASSPHRASE
def keygen(output: str, key_id: str | None, passphrase_env: str | None) -> None:
    """Make an Ed25519 key pair for signing bundles."""
    path = Path(output)
    public_path = path.with_suffix(".pub")
    key_id = key_id or path.stem
    if public_path == path:
        raise _BadInput(f"{path}: name the private key file other than *.pub")
    private = bundle_keys.generate_private_key()
    try:
        bundle_keys.write_private_key(private, path, _passphrase(passphrase_env))
    except FileExistsError:
        raise _BadInput(f"{path} exists: a private key is never overwritten") from None
    except OSError as exc:
        raise _BadInput(f"cannot write {path}: {exc.strerror}") from None
    public = private.public_key()
    try:
        public_path.write_bytes(bundle_keys.public_key_pem(public))
    except OSError as exc:
        raise _BadInput(f"cannot write {public_path}: {exc.strerror}") from None
    click.echo(f"wrote {path} (private, mode 0600: keep it off the gateways) and {public_path}")
    click.echo(f"fingerprint {bundle_keys.fingerprint(public)}; trust it in a gateway config:\n")
    click.echo("bundles:\n  keys:\n"
               f"    {key_id}:\n      public_key: {bundle_keys.public_key_text(public)}\n"
               f"  signers:\n    firmware: [{key_id}]")


@bundle.command("sign")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, exists=True),
              help="private key file (from bundle keygen)")
@click.option("--key-id", default=None, help="the key's id in the gateways' configs (default: "
              "the key file's name without its suffix)")
@click.option("--kind", required=True, type=click.Choice(KINDS),
              help="config: one gateway YAML; model: an .onnx and its manifest; firmware: one "
              "MCU image")
@click.option("--name", required=True, help="config: the gateway id; model: the model's name; "
              "firmware: the image's name")
@click.option("--version", "version", required=True, help="1 to 4 numbers, e.g. 1.5.0: each "
              "bundle of a kind and name must be newer than the one applied before")
@click.option("--description", default="", help="a line for people (kept in the manifest)")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="the bundle file to write")
@_PASSPHRASE
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
def sign(key_path: str, key_id: str | None, kind: str, name: str, version: str,
         description: str, output: str, passphrase_env: str | None, files: tuple[str, ...]
         ) -> None:
    """Build a signed bundle of FILES (stored under their base names)."""
    try:
        private = bundle_keys.load_private_key(Path(key_path), _passphrase(passphrase_env))
    except (OSError, ValueError) as exc:
        raise _BadInput(f"{key_path}: {exc}") from None
    payload = [(Path(f).name, Path(f).read_bytes()) for f in files]
    try:
        data = build_bundle(kind, name, version, payload, private, key_id or Path(key_path).stem,
                            description=description)
    except ValueError as exc:
        raise _BadInput(str(exc)) from None
    Path(output).write_bytes(data)
    click.echo(f"wrote {output}: {kind} bundle {name} {version}, {len(payload)} file(s), "
               f"{len(data)} bytes, signed by {key_id or Path(key_path).stem}")


@bundle.command("verify")
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="the gateway config whose bundles block (trusted keys) and state dir "
              "(applied versions) decide")
@click.option("--kind", type=click.Choice(KINDS), default=None,
              help="the kind expected (default: what the manifest says)")
@click.option("--device", default=None, help="firmware: the device it is for (its image check "
              "and the version it got last)")
@click.argument("path", type=click.Path(dir_okay=False, exists=True))
def verify(config_path: str, kind: str | None, device: str | None, path: str) -> None:
    """Would the gateway accept the bundle at PATH? Prints its manifest and the verdict."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise _BadInput(str(exc)) from None
    data = Path(path).read_bytes()
    verifier = BundleVerifier(config.bundles.trust(), AppliedVersions(config.gateway.state_dir))
    try:
        kind = kind or _claimed_kind(data, config.bundles.max_bytes)
        check = _payload_check(config, Path(config_path).resolve().parent, kind, device)
        verified = verifier.verify(data, kind=kind, source="cli bundle verify",
                                   scope=device or "", check=check)
    except BundleRefused as exc:
        _show_manifest(data)
        click.echo(f"{path}: REFUSED ({exc.reason}): {exc.detail}")
        sys.exit(exit_codes.BUNDLE_REFUSED)
    _show_manifest(data)
    click.echo(f"{path}: verified: {verified.describe()}")
    if kind == "firmware" and device is None:
        click.echo("note: no --device: the image and the version were not checked against a "
                   "device")


def _claimed_kind(data: bytes, max_bytes: int) -> str:
    """The kind the manifest names, before anything is verified (to pick the checks)."""
    return parse_manifest(read_bundle(data, max_bytes).manifest_bytes).kind


def _payload_check(config: GatewayConfig, base_dir: Path, kind: str,
                   device: str | None) -> PayloadCheck | None:
    if kind == "config":
        from gateway.config.config_bundle import config_check

        return config_check(config.gateway.id, base_dir)
    if kind == "model":
        from edge_models.package import check_model_package

        return check_model_package
    if device is None:
        return None
    from drivers.registry import REGISTRY
    from gateway.bundles.firmware import image_check

    node = next((d for d in config.devices if d.name == device), None)
    updates = REGISTRY.firmware_of(node) if node is not None else None
    if updates is None:
        raise _BadInput(f"no device {device!r} that takes firmware updates in {base_dir}")
    return image_check(updates)


def _show_manifest(data: bytes) -> None:
    """The manifest as the bundle states it (unverified when the verdict is a refusal)."""
    try:
        manifest = parse_manifest(read_bundle(data, len(data)).manifest_bytes)
    except BundleRefused:
        return
    click.echo(f"{MANIFEST_FILE}: {manifest.kind} {manifest.name} {manifest.version}, created "
               f"{manifest.created.isoformat()}"
               + (f" ({manifest.description})" if manifest.description else ""))
    for f in manifest.files:
        click.echo(f"  {f.name}  {f.size} bytes  sha256 {f.sha256}")
