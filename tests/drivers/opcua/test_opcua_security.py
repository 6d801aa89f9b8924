"""Secure channels and identities against the simulated PLC; certificates made in the test."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest
from opcua_helpers import Collector, device, driver

from gateway.errors import DeviceUnreachable
from gateway.types import Quality
from hil.devices.opcua_plc import OpcUaPlcSimulator
from hil.opcua_certs import make_app_certificate

CLIENT_URI = "urn:chenxing-edge:test-gateway"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A client certificate and a server certificate (generated, never downloaded)."""
    root = tmp_path_factory.mktemp("pki")
    cert, key = make_app_certificate(root / "client.der", root / "client-key.pem", CLIENT_URI,
                                     server=False)
    scert, skey = make_app_certificate(root / "server.der", root / "server-key.pem",
                                       "urn:chenxing:hil:opcua-plc", server=True)
    trusted = root / "trusted"
    trusted.mkdir()
    shutil.copy(scert, trusted / "plc.der")
    (root / "empty").mkdir()
    return {"cert": cert, "key": key, "server_cert": scert, "server_key": skey,
            "trusted": trusted, "empty": root / "empty"}


async def read_once(cfg_kw: dict, sim: OpcUaPlcSimulator) -> Collector:
    tags = [{"name": "melt", "node": sim.node_id("Machine.MeltTemp"), "type": "float64"}]
    drv = driver(device(sim.endpoint, tags, mode="poll", **cfg_kw))
    got = Collector()
    await drv.connect()
    try:
        got(await drv.read(drv.poll_groups()[0]))
    finally:
        await drv.close()
    return got


async def test_security_policies_modes_and_username_identity(
    pki: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLC_PASSWORD", "s3cret")
    endpoints = [
        "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt",
        "Aes128_Sha256_RsaOaep_SignAndEncrypt", "Aes256_Sha256_RsaPss_Sign",
    ]
    async with OpcUaPlcSimulator(
        security=endpoints, users={"operator": "s3cret"}, allow_anonymous=False,
        certificate=pki["server_cert"], private_key=pki["server_key"],
    ) as sim:
        identity = {"username": "operator", "password": {"env": "PLC_PASSWORD"}}
        for policy, mode in (
            ("Basic256Sha256", "Sign"), ("Basic256Sha256", "SignAndEncrypt"),
            ("Aes128_Sha256_RsaOaep", "SignAndEncrypt"), ("Aes256_Sha256_RsaPss", "Sign"),
        ):
            security = {"policy": policy, "mode": mode, "certificate": str(pki["cert"]),
                        "private_key": str(pki["key"]), "trust_dir": str(pki["trusted"])}
            got = await read_once({"security": security, **identity}, sim)
            assert got.quality(0) == Quality.GOOD, (policy, mode)

        base = {"policy": "Basic256Sha256", "mode": "SignAndEncrypt",
                "certificate": str(pki["cert"]), "private_key": str(pki["key"])}
        # no security at all: the server offers no such endpoint
        with pytest.raises(DeviceUnreachable):
            await read_once(identity, sim)
        # wrong password
        monkeypatch.setenv("PLC_PASSWORD", "wrong")
        with pytest.raises(DeviceUnreachable, match="Bad"):
            await read_once({"security": {**base, "trust_dir": str(pki["trusted"])},
                             **identity}, sim)
        monkeypatch.setenv("PLC_PASSWORD", "s3cret")
        # anonymous is not allowed on this server
        with pytest.raises(DeviceUnreachable, match="Bad"):
            await read_once({"security": {**base, "trust_dir": str(pki["trusted"])}}, sim)


async def test_server_certificate_must_be_trusted_unless_commissioning(
    pki: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    async with OpcUaPlcSimulator(
        security=["Basic256Sha256_SignAndEncrypt"],
        certificate=pki["server_cert"], private_key=pki["server_key"],
    ) as sim:
        base = {"policy": "Basic256Sha256", "mode": "SignAndEncrypt",
                "certificate": str(pki["cert"]), "private_key": str(pki["key"])}
        with caplog.at_level(logging.ERROR, logger="drivers.opcua.security"), pytest.raises(
            DeviceUnreachable, match="BadCertificateUntrusted"
        ):
            await read_once({"security": {**base, "trust_dir": str(pki["empty"])}}, sim)
        assert "SHA-256" in caplog.text and str(pki["empty"]) in caplog.text
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="drivers.opcua.security"):
            got = await read_once({"security": {**base, "trust_any_server": True}}, sim)
        assert got.quality(0) == Quality.GOOD
        assert "trust_any_server" in caplog.text
        await asyncio.sleep(0)
