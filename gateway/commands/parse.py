"""The ``cmd`` payload of the JSON contract: bytes in, a :class:`Command` or a reason out.

Only the documented shape is accepted (docs/contract-json.md, docs/schemas/cmd.schema.json);
anything else is a :class:`MalformedCommand` carrying the command id when one could be read,
so that the brain still gets an answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gateway import json_input
from gateway.errors import JsonTooDeep, MalformedCommand

CONTRACT_VERSION = 1
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_ID_LENGTH = 128
_ALLOWED_KEYS = frozenset({"v", "type", "id", "writes", "ts", "gateway", "site", "line"})
_WRITE_KEYS = frozenset({"tag", "value"})

@dataclass(frozen=True, slots=True)
class NonFiniteNumber:
    """A JSON number beyond float64 (``1e400``): kept as its text, so that the write is
    refused quoting the value as sent (``float()`` would make it infinity)."""

    text: str

    def __str__(self) -> str:
        return self.text


#: a write's value as it arrives: JSON ints are exact Python ints, whatever their size
CommandValue = bool | int | float | str | NonFiniteNumber


def _parse_float(text: str) -> float | NonFiniteNumber:
    number = float(text)
    return number if math.isfinite(number) else NonFiniteNumber(text)


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """One write the brain asked for: a tag path and an engineering value."""

    tag: str
    value: CommandValue


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    writes: tuple[WriteRequest, ...]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _read_id(body: Any) -> str | None:
    if isinstance(body, dict):
        raw = body.get("id")
        if isinstance(raw, str) and 0 < len(raw) <= MAX_ID_LENGTH:
            return raw
    return None


def shallow_json(payload: bytes) -> Any:
    """The payload as JSON (of one nested too deeply, the part that is not), or None when
    it is not JSON: for a quick look at a command's type and id."""
    try:
        return json_input.loads(payload)
    except JsonTooDeep as exc:
        return exc.shallow
    except (UnicodeDecodeError, ValueError):
        return None


def peek_command_id(payload: bytes) -> str | None:
    """The id of a JSON command when it can be read (to answer one that is refused)."""
    return _read_id(shallow_json(payload))


def check_envelope(body: dict[str, Any], allowed: frozenset[str], types: tuple[str, ...],
                   gateway_id: str) -> str:
    """The checks every JSON command from the brain shares, in order: an id, known fields,
    the contract version, a type of ``types``, addressed to this gateway. Returns the id;
    raises :class:`MalformedCommand` (with the id once read)."""
    command_id = _read_id(body)

    def bad(reason: str) -> MalformedCommand:
        return MalformedCommand(reason, command_id)

    if command_id is None:
        raise bad(f"'id' must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise bad(f"unknown field(s): {', '.join(unknown)}")
    if body.get("v") != CONTRACT_VERSION:
        raise bad(f"unsupported contract version {body.get('v')!r} (expected {CONTRACT_VERSION})")
    if body.get("type") not in types:
        raise bad(f"unsupported message type {body.get('type')!r} (expected "
                  f"{' or '.join(repr(t) for t in types)})")
    if "gateway" in body and body["gateway"] != gateway_id:
        raise bad(f"addressed to gateway {body['gateway']!r}, this is {gateway_id!r}")
    return command_id


def parse_command(payload: bytes, gateway_id: str, max_writes: int) -> Command:
    """Decode and check the structure of a command (not yet the tags or values)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MalformedCommand(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        body = json_input.loads(payload, parse_constant=_no_constant, parse_float=_parse_float)
    except JsonTooDeep as exc:  # answered: the id is read from what is not too deep
        raise MalformedCommand(f"malformed JSON: {exc}", _read_id(exc.shallow)) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedCommand(f"not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedCommand("a command is a JSON object")
    command_id = check_envelope(body, _ALLOWED_KEYS, ("cmd",), gateway_id)

    def bad(reason: str) -> MalformedCommand:
        return MalformedCommand(reason, command_id)

    writes = body.get("writes")
    if not isinstance(writes, list) or not writes:
        raise bad("'writes' must be a non-empty list")
    if len(writes) > max_writes:
        raise bad(f"{len(writes)} writes in one command; at most {max_writes}")
    requests: list[WriteRequest] = []
    for i, write in enumerate(writes):
        if not isinstance(write, dict) or set(write) != _WRITE_KEYS:
            raise bad(f"writes[{i}] must be an object with exactly 'tag' and 'value'")
        tag, value = write["tag"], write["value"]
        if not isinstance(tag, str) or not tag:
            raise bad(f"writes[{i}].tag must be a non-empty string")
        if not isinstance(value, bool | int | float | str | NonFiniteNumber):
            raise bad(f"writes[{i}].value must be a number, true/false or a string")
        requests.append(WriteRequest(tag, value))
    return Command(command_id, tuple(requests))
