"""JSON Schema of the config file, generated from the pydantic models.

``chenxing-gateway config schema -o config/gateway.schema.json`` regenerates the
committed copy; a test fails when it is stale.
"""

from __future__ import annotations

import json

from drivers.registration import DriverRegistry
from drivers.registry import REGISTRY
from gateway.config.models import gateway_config_model

SCHEMA_ID = "https://chenxing-edge.dev/schema/gateway.schema.json"


def schema_dict(drivers: DriverRegistry = REGISTRY) -> dict[str, object]:
    """The schema of a config whose devices are those of ``drivers``."""
    schema = gateway_config_model(drivers).model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def schema_text(drivers: DriverRegistry = REGISTRY) -> str:
    return json.dumps(schema_dict(drivers), indent=2, sort_keys=True) + "\n"
