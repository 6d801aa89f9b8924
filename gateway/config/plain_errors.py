"""Validation errors in the words of the person writing the file.

pydantic reports what its validators expected: ``Input tag 'modbus-tcp' found using
'protocol' does not match any of the expected tags``, one error per member of a union
(``scale.float`` and ``scale.int``), ``Input should be a valid dictionary or instance of
Identity``. Here each error becomes a plain sentence at the key the file has: an unknown
key or value gets the closest known one ("did you mean", by :mod:`difflib`) and the
choices, the errors of one value against the members of a union become one sentence,
and no message names pydantic's types, unions, discriminators or "Input".
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from gateway.config.spelling import unknown

KeyPath = tuple[str | int, ...]

#: what a value of the wrong type should have been, by pydantic error type
_EXPECTED = {
    "string_type": "text", "str_type": "text",
    "int_type": "a whole number", "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "dict_type": "a mapping of keys", "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
    "list_type": "a list", "tuple_type": "a list", "set_type": "a list",
    "none_required": "nothing (null)", "path_type": "a file path",
    "bytes_type": "text",
}  # fmt: skip

#: patterns of the config's name types, in words
_PATTERNS = {
    r"^[A-Za-z0-9][A-Za-z0-9_\-]*$":
        "must start with a letter or digit and hold only letters, digits, '_' and '-'",
    r"^[A-Za-z0-9][A-Za-z0-9_\-/]*$":
        "must start with a letter or digit and hold only letters, digits, '_', '-' and '/'",
    r"^[a-z][a-z0-9_-]*$":
        "must start with a lower-case letter and hold only lower-case letters, digits, '_' "
        "and '-'",
    r"^[a-z0-9][a-z0-9_-]*$":
        "must start with a lower-case letter or digit and hold only lower-case letters, "
        "digits, '_' and '-'",
    r"^[A-Za-z0-9][A-Za-z0-9_-]*$":
        "must start with a letter or digit and hold only letters, digits, '_' and '-'",
    r"^[^#+]+$": "must not be empty or hold the MQTT wildcards '#' and '+'",
    r"^[^#+/]+$": "must not be empty or hold '#', '+' or '/'",
    r"^(\+|[^#+/]+)$": "must be '+' (every group) or a name without '#', '+' and '/'",
    r"^[!-~]+$": "must be printable ASCII without spaces",
    r"^opc\.tcp://[^/\s]+(/\S*)?$": "must be an OPC UA address: opc.tcp://host:port[/path]",
    r"^[0-9]{8}$": "must be 8 digits",
    r"^[0-9]{12}$": "must be 12 digits",
    r"^[0-9a-f]{64}$": "must be 64 hexadecimal digits in lower case (a SHA-256)",
    r"^[0-9a-fA-F]{64}$": "must be 64 hexadecimal digits (a SHA-256)",
    r"^\d{1,3}\.\d{1,3}\.\d{1,5}$": "must be a version such as 1.2.3",
    r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$":
        "must start with a lower-case letter and hold lower-case letters, digits, '_' and '.'",
    r"^[A-Za-z0-9][A-Za-z0-9_\-]*\.[A-Za-z0-9][\w\-/]*$":
        "must be device.tag (a device name, a '.', a tag name)",
    r"^[A-Za-z0-9][A-Za-z0-9._+-]*$":
        "must be a file name (letters, digits, '.', '_', '+', '-'; no folders)",
}


def plain_errors(model: type[BaseModel], data: Any,
                 errors: Iterable[Mapping[str, Any]]) -> list[tuple[KeyPath, str]]:
    """``(key path in the file, message)`` for each distinct problem of ``errors``
    (pydantic's ``ValidationError.errors()`` for ``model.model_validate(data)``)."""
    grouped: dict[KeyPath, list[tuple[Mapping[str, Any], bool]]] = {}
    for err in errors:
        path, via_union = resolve_loc(data, err["loc"], err["type"])
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            path = (*path, _unquote(str(err.get("ctx", {}).get("discriminator", ""))))
        grouped.setdefault(path, []).append((err, via_union))
    out: list[tuple[KeyPath, str]] = []
    for path, group in grouped.items():
        if all(via and err["type"] in _EXPECTED for err, via in group) and any(
                len(other) > len(path) and other[:len(path)] == path for other in grouped):
            continue  # the value has another member's shape; its errors inside say why
        union = [err for err, via in group if via]
        direct = [err for err, via in group if not via]
        messages = [_message(model, data, path, err) for err in direct]
        if union:
            messages.append(_union_message(model, data, path, union))
        out.extend((path, message) for message in dict.fromkeys(messages))
    return out


def resolve_loc(data: Any, loc: Iterable[str | int], kind: str = "") -> tuple[KeyPath, bool]:
    """pydantic's location as the path of keys and list items in the data, without the
    names of union members it inserts (``scale.float``, ``devices[0].modbus_tcp``);
    whether any was dropped. A missing key stays, as the last part of the path."""
    parts = list(loc)
    path: list[str | int] = []
    current = data
    dropped = False
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if _has(current, part):
            current = current[part]
        elif isinstance(current, dict) and last and kind == "missing":
            current = None
        elif current is None and not isinstance(part, int) and (last or kind == "missing"):
            current = None  # under a missing key: reported where the file lacks it
        else:  # a union member's or validator's name, not in the file; a tagged union's
            # member is named by the value of its tag (``protocol: modbus_tcp``): not a union
            tagged = isinstance(current, dict) and part in current.values()
            dropped = dropped or not tagged
            continue
        path.append(part)
    return tuple(path), dropped


def keys_at(model: type[BaseModel], data: Any, path: KeyPath) -> list[str]:
    """The keys the model accepts at ``path`` of ``data`` (for a union of models, those
    of the members the data's literal keys select, e.g. its ``protocol``)."""
    candidates: list[Any] = [model]
    node = data
    for part in path:
        following: list[Any] = []
        for annotation in candidates:
            following.extend(_child(annotation, node, part))
        candidates = following
        node = node[part] if _has(node, part) else None
    names: dict[str, None] = {}
    for annotation in candidates:
        for cls in _models(annotation, node):
            for name, info in cls.model_fields.items():
                names[info.alias or name] = None
    return list(names)


# --- messages ---------------------------------------------------------------------------


def _message(model: type[BaseModel], data: Any, path: KeyPath, err: Mapping[str, Any]) -> str:
    kind = str(err["type"])
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    given = err.get("input")
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else ""
        return unknown("key", key, keys_at(model, data, path[:-1]), label="keys here:")
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        choices = _quoted_values(str(ctx.get("expected_tags", "")))
        value = _value_at(data, path)
        if not isinstance(value, str):  # a number, list or mapping where a name goes
            return f"must be one of {', '.join(choices)}{_got(value)}"
        return unknown(str(path[-1]), value, choices)
    if kind == "union_tag_not_found":
        return "required key is missing"
    if kind in ("literal_error", "enum"):
        choices = _quoted_values(str(ctx.get("expected", "")))
        field = path[-1] if path and isinstance(path[-1], str) else "value"
        if isinstance(given, str) and choices:
            return unknown(field, given, choices)
        return f"must be {ctx.get('expected', 'one of the allowed values')} (got {given!r})"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}{_got(given)}{_quote_hint(kind, given)}"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        words = _PATTERNS.get(pattern, f"must match the pattern {pattern}")
        return f"{words}{_got(given)}"
    if kind in ("too_short", "too_long"):
        size = ctx.get("actual_length")
        text = _words(str(err["msg"])).split(" after validation")[0]
        return text + (f" (got {size})" if size is not None else "")
    message = _words(str(err["msg"]))
    if kind not in ("value_error", "assertion_error") and not isinstance(given, dict | list):
        message += _got(given)
    return message


def _union_message(model: type[BaseModel], data: Any, path: KeyPath,
                   errs: Sequence[Mapping[str, Any]]) -> str:
    """One sentence for a value that no member of a union accepted: what it should have
    been when every member refused its type, else the specific members' reasons."""
    expected = [_EXPECTED[str(e["type"])] for e in errs if e["type"] in _EXPECTED]
    others = [e for e in errs if e["type"] not in _EXPECTED]
    if others:
        return "; ".join(dict.fromkeys(_message(model, data, path, e) for e in others))
    kinds = list(dict.fromkeys(expected))
    if "a number" in kinds and "a whole number" in kinds:
        kinds.remove("a whole number")
    given = errs[0].get("input")
    return f"expected {' or '.join(kinds)}{_got(given)}"


def _got(given: Any) -> str:
    if isinstance(given, dict):
        return " (got a mapping)"
    if isinstance(given, list):
        return " (got a list)"
    if given is None:
        return ""
    got = repr(given)
    return f" (got {got if len(got) <= 80 else got[:76] + '...'})"  # a PEM block: its start


def _quote_hint(kind: str, given: Any) -> str:
    if kind in ("string_type", "str_type") and isinstance(given, int | float | bool):
        return "; put it in quotes to make it text"
    return ""


def _words(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    msg = re.sub(r"^(Input|String|List|Dictionary|Tuple|Set|Value) should ", "must ", msg)
    msg = re.sub(r"^Input ", "the value ", msg)
    return msg


def _quoted_values(expected: str) -> list[str]:
    return re.findall(r"'((?:[^'\\]|\\.)*)'", expected)


def _unquote(text: str) -> str:
    return text.strip("'\"")


# --- walking the model along the data --------------------------------------------------


def _value_at(data: Any, path: KeyPath) -> Any:
    """The value at ``path`` of ``data``, None where the path leaves it."""
    node = data
    for part in path:
        if not _has(node, part):
            return None
        node = node[part]
    return node


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _members(annotation: Any) -> list[Any]:
    """``annotation`` without Annotated, Optional and unions: its possible types."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _members(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _models(annotation: Any, node: Any) -> list[type[BaseModel]]:
    """The models ``annotation`` may be for ``node``: a union's members narrowed by the
    literal keys the node has (a discriminator such as ``protocol``)."""
    found = [m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(found) > 1 and isinstance(node, dict):
        chosen = [m for m in found if _literals_match(m, node)]
        if chosen:
            return chosen
    return found


def _literals_match(model: type[BaseModel], node: dict[str, Any]) -> bool:
    matched = False
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in node:
            continue
        literal = [m for m in _members(info.annotation) if get_origin(m) is Literal]
        if literal:
            if node[key] not in [v for lit in literal for v in get_args(lit)]:
                return False
            matched = True
    return matched


def _child(annotation: Any, node: Any, part: str | int) -> list[Any]:
    """The annotations of ``annotation``'s value at ``part``."""
    out: list[Any] = []
    for member in _members(annotation):
        origin = get_origin(member)
        args = get_args(member)
        if isinstance(member, type) and issubclass(member, BaseModel):
            if member not in _models(annotation, node) or not isinstance(part, str):
                continue
            for name, info in member.model_fields.items():
                if part in (name, info.alias):
                    out.append(info.annotation)
        elif origin in (list, tuple, set, frozenset, Sequence) and isinstance(part, int):
            if origin is tuple and args and args[-1] is not Ellipsis:
                out.extend(args[part:part + 1])
            elif args:
                out.append(args[0])
        elif origin in (dict, Mapping) and isinstance(part, str) and len(args) == 2:
            out.append(args[1])
    return out
