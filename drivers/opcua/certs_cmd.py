"""``chenxing-gateway certs``: the gateway's OPC UA client certificate and private key.

Either from a device of the config (its ``security.application_uri``, ``certificate``
and ``private_key``; ``private_key_password`` encrypts the key), or from explicit
``--application-uri`` and ``--out-dir``. The certificate is self-signed; the OPC UA
server must be told to trust it, so the command ends with its SHA-1 thumbprint and
what to do on the server side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
from cryptography import x509

from drivers.opcua.certificates import (
    KEY_SIZES,
    default_host_names,
    make_app_certificate,
    sha1_thumbprint,
)
from drivers.opcua.security import DEFAULT_APPLICATION_URI, fingerprint
from gateway import exit_codes
from gateway.errors import ConfigError

CERT_NAME = "client-cert.der"
KEY_NAME = "client-key.pem"


@dataclass(frozen=True, slots=True)
class CertificatePlan:
    """What to write: where, and for which application URI."""

    application_uri: str
    certificate: Path
    private_key: Path
    key_password: str | None = None
    device: str | None = None


def plan_from_config(config_path: str, device_name: str) -> CertificatePlan:
    """The certificate of OPC UA device ``device_name`` as its security config names it."""
    from drivers.opcua.config import OpcUaDeviceConfig
    from gateway.config.loader import load_config
    from gateway.config.secrets import resolve_secret

    config = load_config(config_path)
    devices = {d.name: d for d in config.devices}
    device = devices.get(device_name)
    if device is None:
        opcua = [d.name for d in config.devices if isinstance(d, OpcUaDeviceConfig)]
        raise click.UsageError(
            f"{config_path}: no device {device_name!r} (OPC UA devices: "
            f"{', '.join(opcua) or 'none'})"
        )
    if not isinstance(device, OpcUaDeviceConfig):
        raise click.UsageError(
            f"{config_path}: device {device_name!r} is {device.protocol}, not opcua"
        )
    sec = device.security
    if sec.certificate is None or sec.private_key is None:
        raise click.UsageError(
            f"{config_path}: device {device_name!r} names no security.certificate and "
            "security.private_key; add them (and a secure policy), or give --out-dir"
        )
    password = None
    if sec.private_key_password is not None:
        password = resolve_secret(sec.private_key_password, Path(config_path).resolve().parent)
    return CertificatePlan(
        sec.application_uri or DEFAULT_APPLICATION_URI,
        sec.certificate,
        sec.private_key,
        password,
        device_name,
    )


def _trust_advice(plan: CertificatePlan) -> str:
    return (
        "On the OPC UA server: add this certificate to the trusted client certificates\n"
        f"  (copy {plan.certificate.name} into the server's trust list, e.g. pki/trusted/certs,\n"
        "  or connect once and move it from the server's rejected list to the trusted one),\n"
        "  after checking that the thumbprint the server shows is the SHA-1 above.\n"
        "On the gateway: put the server's certificate (or its CA) into the device's "
        "security.trust_dir."
    )


@click.command("certs")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="gateway YAML file (with --device)")
@click.option("--device", "device_name", help="OPC UA device whose security config to follow")
@click.option("--application-uri", help=f"without -c (default {DEFAULT_APPLICATION_URI})")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help=f"without -c: write {CERT_NAME} and {KEY_NAME} here")
@click.option("--key-size", type=click.Choice([str(k) for k in KEY_SIZES]), default="2048",
              show_default=True, help="RSA key size in bits")
@click.option("--days", type=click.IntRange(1, 36500), default=730, show_default=True,
              help="validity in days")
@click.option("--host", "hosts", multiple=True, metavar="NAME|IP",
              help="host name or IP address of the gateway, repeatable "
              "(default: localhost, this host's name, 127.0.0.1)")
@click.option("--common-name", help="subject CN (default: the application URI)")
@click.option("--force", is_flag=True, help="overwrite an existing certificate or key")
def certs(
    config_path: str | None, device_name: str | None, application_uri: str | None,
    out_dir: Path | None, key_size: str, days: int, hosts: tuple[str, ...],
    common_name: str | None, force: bool,
) -> None:
    """Create the gateway's OPC UA client certificate (DER) and private key (PEM)."""
    if config_path is not None or device_name is not None:
        if config_path is None or device_name is None:
            raise click.UsageError("-c/--config and --device go together")
        if application_uri is not None or out_dir is not None:
            raise click.UsageError("give either -c/--device or --application-uri/--out-dir")
        try:
            plan = plan_from_config(config_path, device_name)
        except ConfigError as exc:
            click.echo(str(exc), err=True)
            raise SystemExit(exit_codes.CONFIG_INVALID) from exc
    else:
        if out_dir is None:
            raise click.UsageError("give -c CONFIG --device NAME, or --out-dir DIR")
        plan = CertificatePlan(application_uri or DEFAULT_APPLICATION_URI,
                               out_dir / CERT_NAME, out_dir / KEY_NAME)
    existing = [p for p in (plan.certificate, plan.private_key) if p.exists()]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        click.echo(f"Error: {' and '.join(map(str, existing))} {verb}; nothing written"
                   " (add --force to replace them; the server must then trust "
                   "the new certificate)", err=True)
        raise SystemExit(exit_codes.FILE_EXISTS)
    host_names = list(hosts) or default_host_names()
    try:
        make_app_certificate(
            plan.certificate, plan.private_key, plan.application_uri, server=False,
            common_name=common_name, days=days, key_size=int(key_size), hosts=host_names,
            key_password=plan.key_password,
        )
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot write the certificate: {exc}") from exc
    cert = x509.load_der_x509_certificate(plan.certificate.read_bytes())
    for_device = f" for device {plan.device}" if plan.device else ""
    click.echo(f"OPC UA client certificate{for_device}:")
    click.echo(f"  certificate      {plan.certificate}")
    click.echo(f"  private key      {plan.private_key}"
               + (" (encrypted)" if plan.key_password else ""))
    click.echo(f"  application URI  {plan.application_uri}")
    click.echo(f"  subject          {cert.subject.rfc4514_string()}")
    click.echo(f"  host names       {', '.join(host_names)}")
    click.echo(f"  RSA {key_size} bits, valid {cert.not_valid_before_utc:%Y-%m-%d} .. "
               f"{cert.not_valid_after_utc:%Y-%m-%d}")
    click.echo(f"  SHA-1 thumbprint {sha1_thumbprint(cert)}")
    click.echo(f"  SHA-256          {fingerprint(cert)}")
    if plan.device is None:
        click.echo(f"  config           security.certificate: {plan.certificate}, "
                   f"security.private_key: {plan.private_key}, security.application_uri: "
                   f"{plan.application_uri} (or unset: it is read from the certificate)")
    click.echo("")
    click.echo(_trust_advice(plan))
