"""JSON Schema of the config file, generated from the pydantic models.

``chenxing-gateway config schema -o config/gateway.schema.json`` regenerates the
committed copy; a test fails when it is stale.
"""

from __future__ import annotations

import json

from gateway.config.models import GatewayConfig

SCHEMA_ID = "https://chenxing-edge.dev/schema/gateway.schema.json"


def schema_dict() -> dict[str, object]:
    schema = GatewayConfig.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def schema_text() -> str:
    return json.dumps(schema_dict(), indent=2, sort_keys=True) + "\n"
