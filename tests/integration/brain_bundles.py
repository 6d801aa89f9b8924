"""The brain's side of config/apply and model/deploy for tests: a signing key, signed and
unsigned bundles of the identity model and of configs, and a gateway config that trusts the key."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import yaml

from gateway.bundles import archive, build_bundle, keys
from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from tests.edge_models.helpers import IDENTITY, identity_manifest, write_model

#: the brain's release key, trusted by the gateways of these tests
BRAIN_KEY = keys.generate_private_key()
#: a key the gateways do not trust
STRANGER_KEY = keys.generate_private_key()
IDENTITY_ONNX = IDENTITY.read_bytes()


def trust() -> dict[str, Any]:
    """The ``bundles`` block trusting :data:`BRAIN_KEY` for configs and models."""
    return {"keys": {"brain": {"public_key": keys.public_key_text(BRAIN_KEY.public_key())}},
            "signers": {"config": ["brain"], "model": ["brain"]}, "max_bytes": "1MiB"}


def kpi_manifest(version: str, **over: Any) -> dict[str, Any]:
    """The identity model over the meter's active power: output ``power_mean``."""
    body: dict[str, Any] = {
        "version": version,
        "inputs": [{"tag": "meter.active_power", "aggregation": "mean", "window": "1s"}],
        "cycle": None,
        "trigger": {"on": "interval", "every": "300ms", "settle": "100ms"},
        "outputs": [{"name": "power_mean", "onnx": "kwh", "unit": "kW"}],
    }
    return identity_manifest(**{**body, **over})


def models_folder(tmp: Path) -> Path:
    """A models folder with kpi version 1 in service."""
    folder = tmp / "models"
    write_model(folder, "kpi", kpi_manifest("1"))
    return folder


def model_bundle(version: str, key: keys.PrivateKey = BRAIN_KEY, key_id: str = "brain",
                 **over: Any) -> bytes:
    """A signed package of the kpi model at ``version`` (``shadow=True``: a candidate)."""
    manifest = yaml.safe_dump(kpi_manifest(version, **over), sort_keys=False).encode()
    return build_bundle("model", "kpi", version, [("kpi.yaml", manifest),
                                                  ("kpi.onnx", IDENTITY_ONNX)], key, key_id)


def config_bundle(text: str, version: str, name: str = "gw-test") -> bytes:
    return build_bundle("config", name, version, [("gateway.yaml", text.encode())], BRAIN_KEY,
                        "brain")


def unsigned(bundle: bytes) -> bytes:
    """The bundle without its ``manifest.sig``: an unsigned bundle."""
    entries = [e for e in archive.unpack(bundle, 1 << 24) if e[0] != "manifest.sig"]
    return archive.pack(entries, 0)


def json_command(op: str, command_id: str, bundle: bytes, **extra: Any) -> str:
    return json.dumps({"v": 1, "type": op, "id": command_id,
                       "bundle": base64.b64encode(bundle).decode(), **extra})


def audit_lines(state: Path) -> list[dict[str, Any]]:
    path = state / "audit.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def deploy_metric(bundle: bytes, name: str | None = "Node Control/Model Deploy",
                  datatype: int = pb.Bytes, **properties: str | int) -> pb.Payload.Metric:
    """The NCMD metric a Sparkplug host sends a bundle in (``name`` None: by alias only),
    with its properties (``id``, ``expected_version``)."""
    metric = pb.Payload.Metric(datatype=datatype, bytes_value=bundle)
    if name is not None:
        metric.name = name
    for key, value in properties.items():
        metric.properties.keys.append(key)
        prop = metric.properties.values.add()
        if isinstance(value, str):
            prop.type, prop.string_value = pb.String, value
        else:
            prop.type, prop.long_value = pb.UInt64, value
    return metric
