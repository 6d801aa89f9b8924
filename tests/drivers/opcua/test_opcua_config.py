"""OPC UA config validation, path and secret handling, and value conversion (no server)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
from asyncua import ua

from drivers.opcua.config import OpcUaTagConfig
from drivers.opcua.convert import qualities, sample_value, timestamp_ns, to_variant
from gateway.config.loader import check_secrets, load_config, load_config_text
from gateway.errors import ConfigError, ConversionError
from gateway.types import Quality

BASE = """
gateway: {{id: gw, site: s, line: l}}
devices:
  - name: press-7
    protocol: opcua
    endpoint: opc.tcp://10.0.0.5:4840
{extra}
    tags:
{tags}
"""
TAG = "      - {name: melt, node: 'ns=2;s=Machine.MeltTemp', type: float64}"


def load(extra: str = "", tags: str = TAG) -> object:
    return load_config_text(BASE.format(extra=extra, tags=tags), "gw.yaml")


def test_a_minimal_device_gets_subscription_defaults() -> None:
    device = load().devices[0]  # type: ignore[attr-defined]
    assert device.mode == "subscription" and device.publishing_interval == 1.0
    assert device.security.policy == "None" and device.queue_size == 1
    assert device.tags[0].address == "ns=2;s=Machine.MeltTemp"


# refused device blocks: cases/config_errors/cases.yaml (test_opcua_golden.py)


def test_relative_paths_resolve_against_the_config_file_and_secrets_are_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = (
        "    username: op\n    password: {file: secrets/plc-password}\n"
        "    security: {policy: Basic256Sha256, mode: SignAndEncrypt, certificate: pki/gw.der,"
        " private_key: pki/gw-key.pem, trust_dir: pki/trusted}"
    )
    path = tmp_path / "gw.yaml"
    path.write_text(BASE.format(extra=extra, tags=TAG))
    monkeypatch.chdir("/")
    device = load_config(path).devices[0]
    assert device.security.certificate == tmp_path / "pki/gw.der"  # type: ignore[attr-defined]
    assert device.security.trust_dir == tmp_path / "pki/trusted"  # type: ignore[attr-defined]
    assert device.password.file == tmp_path / "secrets/plc-password"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"devices\[0\]\.password"):
        check_secrets(load_config(path), path)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets/plc-password").write_text("s3cret\n")
    check_secrets(load_config(path), path)


def tag(**kw: object) -> OpcUaTagConfig:
    return OpcUaTagConfig.model_validate({"name": "t", "node": "ns=2;s=X", "type": "float64", **kw})


def test_status_codes_map_to_qualities() -> None:
    codes = [0, ua.StatusCodes.GoodClamped, ua.StatusCodes.UncertainLastUsableValue,
             ua.StatusCodes.UncertainSensorNotAccurate, ua.StatusCodes.BadNodeIdUnknown,
             ua.StatusCodes.BadCommunicationError, 0xC0000000]
    assert qualities(codes).tolist() == [Quality.GOOD, Quality.GOOD, Quality.UNCERTAIN,
                                         Quality.UNCERTAIN, Quality.BAD, Quality.BAD, Quality.BAD]
    assert qualities([]).dtype == np.uint8


def test_values_timestamps_and_arrays_convert_to_samples() -> None:
    stamp = dt.datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    assert timestamp_ns(stamp, 0) == int(stamp.timestamp()) * 10**9 + 123456000
    assert timestamp_ns(stamp.replace(tzinfo=None), 0) == timestamp_ns(stamp, 0)
    assert timestamp_ns(None, 42) == 42
    assert timestamp_ns(dt.datetime(1601, 1, 1, tzinfo=dt.UTC), 42) == 42
    assert sample_value(True, tag(type="bool")) == 1.0
    assert sample_value(2**40, tag(type="int64")) == float(2**40)
    assert sample_value(stamp, tag()) == stamp.timestamp()
    assert sample_value(7, tag(type="string")) == "7"
    assert sample_value(ua.LocalizedText("auto"), tag(type="string")) == "auto"
    assert sample_value([1, 2, 3], tag(index=2)) == 3.0
    assert json.loads(sample_value([1.5, None], tag(type="string"))) == [1.5, None]  # type: ignore[arg-type]
    for value, t, counter in (
        ([1.0], tag(), "array_without_index"),
        ([1.0], tag(index=4), "index_out_of_range"),
        (1.0, tag(index=0), "type_mismatch"),
        ("text", tag(), "type_mismatch"),
        (None, tag(), "null_value"),
    ):
        with pytest.raises(ConversionError) as err:
            sample_value(value, t)
        assert err.value.counter == counter


def test_writes_convert_to_the_node_type_or_are_refused() -> None:
    V = ua.VariantType
    assert to_variant(1500 / 0.1, V.Int32, "t").Value == 15000
    assert to_variant(1.0, V.Boolean, "t").Value is True
    assert to_variant(2.5, V.Float, "t").VariantType is V.Float
    assert to_variant("x", V.String, "t").Value == "x"
    assert to_variant(0.0, V.DateTime, "t").Value == dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert to_variant(2**50, V.UInt64, "t").Value == 2**50
    for value, vtype in ((256, V.Byte), (-1, V.UInt16), (1.5, V.Int16), (2, V.Boolean),
                         ("x", V.Double), (float("nan"), V.Int32), (1e39, V.Float)):
        with pytest.raises(ConversionError):
            to_variant(value, vtype, "t")
