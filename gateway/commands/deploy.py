"""The brain's management commands ``config/apply`` and ``model/deploy``, each with a signed bundle.

Payload (JSON contract, ``cmd`` topic; docs/schemas/deploy.schema.json)::

    {"v": 1, "type": "model/deploy", "id": "m-0007", "bundle": "<base64 of the bundle>"}
    {"v": 1, "type": "config/apply", "id": "cfg-0012", "bundle": "<base64>",
     "expected_version": 11}

Sparkplug carries the same request as an NCMD metric of DataType Bytes or File
(:mod:`gateway.northbound.sparkplug.commands`). Either way it becomes a
:class:`DeployRequest`, which the runtime's handler (:mod:`gateway.runtime.brain_deploy`)
verifies, applies and answers. This module only reads requests: bytes in, a request or
the reason it is malformed out; never a traceback.

**Size.** A bundle travels whole in one MQTT message: base64 in JSON (4/3 of the
bundle, plus the envelope), raw bytes in Sparkplug. The largest request accepted is
:func:`max_request_bytes` of ``bundles.max_bytes``; anything larger is refused as
malformed before it is decoded.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from gateway import json_input
from gateway.commands.parse import (
    MAX_ID_LENGTH,
    MAX_PAYLOAD_BYTES,
    check_envelope,
    peek_command_id,
    shallow_json,
)
from gateway.commands.result import CommandResult
from gateway.errors import JsonTooDeep, MalformedCommand

Operation = Literal["config/apply", "model/deploy"]
CONFIG_APPLY: Operation = "config/apply"
MODEL_DEPLOY: Operation = "model/deploy"
OPERATIONS: tuple[Operation, ...] = (CONFIG_APPLY, MODEL_DEPLOY)
#: room for the JSON envelope around the base64 bundle
ENVELOPE_BYTES = 4096
_KEYS = frozenset({"v", "type", "id", "bundle", "expected_version", "gateway", "ts", "site",
                   "line"})


def max_request_bytes(max_bundle_bytes: int) -> int:
    """The largest request payload for bundles of at most ``max_bundle_bytes``: the base64
    of the bundle (4 characters per 3 bytes) and the envelope."""
    return (max_bundle_bytes + 2) // 3 * 4 + ENVELOPE_BYTES


@dataclass(frozen=True, slots=True)
class DeployRequest:
    """One ``config/apply`` or ``model/deploy`` from the brain, read but not yet checked."""

    id: str
    op: Operation
    bundle: bytes
    #: ``config/apply``: the config version the bundle was built on (None: whatever runs)
    expected_version: int | None = None


class DeployHandler(Protocol):
    """What the command executor hands management commands to (the runtime implements it)."""

    def recognise(self, topic: str, payload: bytes) -> bool:
        """Is this a management command (cheap: called for every command)?"""

    def submit(self, topic: str, payload: bytes, retained: bool,
               finish: Callable[[CommandResult], None]) -> None:
        """Check and run it in the background; ``finish`` answers (exactly once)."""

    async def close(self) -> None:
        """Return once the commands running in the background have finished."""


def looks_like_json_deploy(payload: bytes) -> bool:
    """A JSON payload naming one of the operations: a management command, not writes.

    A small payload is read (a write command naming a tag ``model/deploy`` stays a write);
    one over the write commands' limit can only be a management command or garbage, and
    is routed here when it names an operation: the parser then says what is wrong."""
    if not any(op.encode() in payload for op in OPERATIONS):
        return False
    if len(payload) > MAX_PAYLOAD_BYTES:
        return True
    body = shallow_json(payload)
    return isinstance(body, dict) and body.get("type") in OPERATIONS


def peek_id(payload: bytes) -> str | None:
    """The request's id when one can be read cheaply (for an answer to a refused one)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        head = payload[:1024]
        marker = head.find(b'"id"')
        if marker < 0:
            return None
        start = head.find(b'"', head.find(b":", marker) + 1)
        end = head.find(b'"', start + 1)
        if start < 0 or end < 0:
            return None
        text = head[start + 1:end].decode("utf-8", "replace")
        return text if 0 < len(text) <= MAX_ID_LENGTH and "\\" not in text else None
    return peek_command_id(payload)


def parse_json_deploy(payload: bytes, gateway_id: str, max_bundle_bytes: int) -> DeployRequest:
    """Read a JSON ``config/apply`` or ``model/deploy``; :class:`MalformedCommand` (with the
    id when one could be read) when it is not one. Call it from a thread for a big payload:
    it decodes the whole JSON and base64."""
    limit = max_request_bytes(max_bundle_bytes)
    if len(payload) > limit:
        raise MalformedCommand(f"payload of {len(payload)} bytes exceeds {limit} (the base64 of "
                               f"a bundle of bundles.max_bytes = {max_bundle_bytes})",
                               peek_id(payload))
    try:
        body: Any = json_input.loads(payload)
    except JsonTooDeep as exc:
        raise MalformedCommand(f"malformed JSON: {exc}", peek_id(payload)) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedCommand(f"not valid JSON: {exc}", peek_id(payload)) from None
    if not isinstance(body, dict):
        raise MalformedCommand("a command is a JSON object")
    command_id = check_envelope(body, _KEYS, OPERATIONS, gateway_id)
    op: Operation = body["type"]

    def bad(reason: str) -> MalformedCommand:
        return MalformedCommand(reason, command_id)

    expected = body.get("expected_version")
    if op == MODEL_DEPLOY and expected is not None:
        raise bad("'expected_version' belongs to config/apply only")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int)
                                 or expected < 1):
        raise bad("'expected_version' must be a config version (an integer from 1)")
    text = body.get("bundle")
    if not isinstance(text, str) or not text:
        raise bad("'bundle' must be the base64 of a signed bundle (docs/bundles.md)")
    try:
        bundle = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise bad(f"'bundle' is not base64: {exc}") from None
    return checked_request(command_id, op, bundle, expected, max_bundle_bytes)


def checked_request(command_id: str, op: Operation, bundle: bytes, expected: int | None,
                    max_bundle_bytes: int) -> DeployRequest:
    """A request from either contract, with the checks both share."""
    if not bundle:
        raise MalformedCommand("the bundle is empty", command_id)
    if len(bundle) > max_bundle_bytes:
        raise MalformedCommand(f"a bundle of {len(bundle)} bytes; at most {max_bundle_bytes} "
                               "(bundles.max_bytes)", command_id)
    return DeployRequest(command_id, op, bundle, expected)
