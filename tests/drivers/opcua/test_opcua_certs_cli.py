"""``chenxing-gateway certs``: a certificate made from the config is the one the driver uses
against the simulated PLC (Basic256Sha256, SignAndEncrypt), once the server trusts it.

The simulated PLC checks client certificates as a real server does: validity, the
application URI against the session's ApplicationDescription, key usages, and a
trust list folder (asyncua's CertificateValidator with a TrustStore).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from asyncua.crypto.truststore import TrustStore
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from opcua_helpers import Collector, driver

from drivers.opcua.certificates import make_app_certificate, sha1_thumbprint
from drivers.opcua.config import OpcUaDeviceConfig
from drivers.opcua.security import certificate_uri
from gateway import exit_codes
from gateway.cli.main import main
from gateway.config.loader import load_config
from gateway.errors import DeviceUnreachable
from gateway.types import Quality
from hil.devices.opcua_plc import APPLICATION_URI, OpcUaPlcSimulator

GATEWAY_URI = "urn:plant-7:line-2:chenxing-gateway"
_V = CertificateValidatorOptions
SERVER_CHECKS = (_V.TIME_RANGE | _V.URI | _V.KEY_USAGE | _V.EXT_KEY_USAGE | _V.TRUSTED
                 | _V.PEER_CLIENT)


def write_config(folder: Path, endpoint: str) -> Path:
    path = folder / "gateway.yaml"
    path.write_text(f"""\
gateway: {{id: gw-certs, site: plant-7, line: line-2, state_dir: state}}
northbound: {{mqtt: {{host: 127.0.0.1, port: 1883}}}}
devices:
  - name: meter
    protocol: modbus_tcp
    host: 127.0.0.1
    tags: [{{name: v, address: 0, type: uint16}}]
  - name: plc
    protocol: opcua
    endpoint: {endpoint}
    mode: poll
    poll_interval: 100ms
    timeout: 3s
    security:
      policy: Basic256Sha256
      mode: SignAndEncrypt
      application_uri: {GATEWAY_URI}
      certificate: pki/gateway-cert.der
      private_key: pki/gateway-key.pem
      private_key_password: {{env: TEST_GW_KEY_PASSWORD}}
      trust_dir: pki/trusted-servers
    tags:
      - {{name: melt, node: "ns=2;s=Machine.MeltTemp", type: float64}}
""")
    return path


async def read_melt(config: OpcUaDeviceConfig) -> Collector:
    drv = driver(config)
    got = Collector()
    await drv.connect()
    try:
        got(await drv.read(drv.poll_groups()[0]))
    finally:
        await drv.close()
    return got


async def test_certs_from_config_connect_with_sign_and_encrypt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_GW_KEY_PASSWORD", "key-s3cret")
    server_cert, server_key = make_app_certificate(
        tmp_path / "server.der", tmp_path / "server-key.pem", APPLICATION_URI, server=True)
    trusted_clients = tmp_path / "plc-trusted-clients"
    trusted_clients.mkdir()
    async with OpcUaPlcSimulator(security=["Basic256Sha256_SignAndEncrypt"],
                                 certificate=server_cert, private_key=server_key) as sim:
        store = TrustStore([trusted_clients], [])
        # the simulator's asyncua server, checking clients as a real PLC does
        sim._server.set_certificate_validator(  # type: ignore[union-attr]
            CertificateValidator(SERVER_CHECKS, store))
        cfg_path = write_config(tmp_path, sim.endpoint)
        (tmp_path / "pki" / "trusted-servers").mkdir(parents=True)
        shutil.copy(server_cert, tmp_path / "pki" / "trusted-servers" / "plc.der")

        runner = CliRunner()
        args = ["certs", "-c", str(cfg_path), "--device", "plc", "--days", "30",
                "--host", "gw-test.plant-7", "--host", "10.20.3.9"]
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        cert_path = tmp_path / "pki" / "gateway-cert.der"
        key_path = tmp_path / "pki" / "gateway-key.pem"
        cert = x509.load_der_x509_certificate(cert_path.read_bytes())
        assert certificate_uri(cert) == GATEWAY_URI
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["gw-test.plant-7"]
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.20.3.9"]
        assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
        # the key is encrypted with the configured password, and private to its owner
        with pytest.raises(TypeError):
            load_pem_private_key(key_path.read_bytes(), password=None)
        load_pem_private_key(key_path.read_bytes(), password=b"key-s3cret")
        assert key_path.stat().st_mode & 0o077 == 0
        thumbprint = re.search(r"SHA-1 thumbprint (\S+)", result.output)
        assert thumbprint and thumbprint.group(1) == sha1_thumbprint(cert)
        assert "trust" in result.output

        config = load_config(cfg_path)
        plc = next(d for d in config.devices if isinstance(d, OpcUaDeviceConfig))
        # the server does not trust the new certificate yet
        with pytest.raises(DeviceUnreachable, match="BadCertificateUntrusted"):
            await read_melt(plc)
        # ... the engineer copies it into the server's trust list, as the command says
        shutil.copy(cert_path, trusted_clients / "chenxing-gateway.der")
        await store.load_trust()
        got = await read_melt(plc)
        assert got.quality(0) == Quality.GOOD and 100 < got.value(0) < 400

        # never overwritten by accident; --force makes a new pair
        before = cert_path.read_bytes()
        again = runner.invoke(main, args)
        assert again.exit_code == exit_codes.FILE_EXISTS and "--force" in again.output
        assert "nothing written" in again.output
        assert cert_path.read_bytes() == before
        forced = runner.invoke(main, [*args, "--force"])
        assert forced.exit_code == 0, forced.output
        assert cert_path.read_bytes() != before


def test_certs_explicit_uri_and_out_dir_and_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(main, ["certs", "--application-uri", "urn:x:gw", "--out-dir",
                                  str(out), "--key-size", "3072"])
    assert result.exit_code == 0, result.output
    cert = x509.load_der_x509_certificate((out / "client-cert.der").read_bytes())
    assert certificate_uri(cert) == "urn:x:gw" and cert.public_key().key_size == 3072  # type: ignore[union-attr]
    load_pem_private_key((out / "client-key.pem").read_bytes(), password=None)

    cfg = write_config(tmp_path, "opc.tcp://127.0.0.1:4840")
    for args, message in (
        (["certs"], "--out-dir"),
        (["certs", "-c", str(cfg)], "go together"),
        (["certs", "-c", str(cfg), "--device", "nope"], "OPC UA devices: plc"),
        (["certs", "-c", str(cfg), "--device", "meter"], "not opcua"),
        (["certs", "-c", str(cfg), "--device", "plc", "--out-dir", str(out)], "either"),
        (["certs", "--out-dir", str(out), "--key-size", "1024"], "1024"),
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    broken = tmp_path / "broken.yaml"
    broken.write_text("devices: [}\n")
    result = runner.invoke(main, ["certs", "-c", str(broken), "--device", "plc"])
    assert result.exit_code == 1 and "broken.yaml" in result.output
