"""Load a YAML config file and report every problem with its file, line and key path.

PyYAML's composer gives every node its position; we walk the node tree once to
build ``{key path: line}`` and to catch duplicate keys (which plain YAML loading
silently merges). Pydantic's error locations are then mapped back to lines.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from gateway.config.models import GatewayConfig, NorthboundConfig
from gateway.config.types import SecretRef
from gateway.errors import ConfigError, ConfigProblem

KeyPath = tuple[str | int, ...]
_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class _Located:
    data: Any
    lines: dict[KeyPath, int]  # path -> 1-based line of the key (or of the item for lists)
    problems: list[ConfigProblem]


def _construct(
    node: yaml.Node,
    path: KeyPath,
    file: str,
    lines: dict[KeyPath, int],
    problems: list[ConfigProblem],
) -> Any:
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = (
                yaml.SafeLoader.construct_scalar(_SCALAR_LOADER, key_node)
                if isinstance(key_node, yaml.ScalarNode)
                else None
            )
            if key is None or key == "<<":
                problems.append(
                    ConfigProblem(
                        file,
                        key_node.start_mark.line + 1,
                        path,
                        "keys must be plain strings (no merges)",
                    )
                )
                continue
            child = (*path, key)
            if key in result:
                problems.append(
                    ConfigProblem(
                        file,
                        key_node.start_mark.line + 1,
                        child,
                        f"duplicate key (first on line {lines[child]})",
                    )
                )
                continue
            lines[child] = key_node.start_mark.line + 1
            result[key] = _construct(value_node, child, file, lines, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            items.append(_construct(item, (*path, i), file, lines, problems))
        return items
    return _SCALAR_LOADER.construct_object(node, deep=True)


_SCALAR_LOADER = yaml.SafeLoader("")
#: libyaml's parser when PyYAML was built with it: same marks, about 2.5x faster on big configs
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(text: str, file: str) -> _Located:
    """Parse YAML text into plain data plus a line map; syntax errors become problems."""
    problems: list[ConfigProblem] = []
    lines: dict[KeyPath, int] = {}
    try:
        loader = _FAST_LOADER(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        message = " ".join(p for p in (exc.context, exc.problem) if p)
        problems.append(ConfigProblem(file, line, (), f"YAML syntax error: {message}"))
        return _Located(None, lines, problems)
    except yaml.reader.ReaderError as exc:  # a control character: no mark, a position
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or " ")
        problems.append(ConfigProblem(
            file, line, (), f"YAML error: character #x{char:04x} is not allowed ({exc.reason})"))
        return _Located(None, lines, problems)
    except yaml.YAMLError as exc:
        problems.append(ConfigProblem(file, 0, (), f"YAML error: {exc}"))
        return _Located(None, lines, problems)
    if root is None:
        problems.append(ConfigProblem(file, 1, (), "the file is empty"))
        return _Located(None, lines, problems)
    data = _construct(root, (), file, lines, problems)
    lines[()] = root.start_mark.line + 1
    return _Located(data, lines, problems)


def _resolve_loc(data: Any, loc: Iterable[str | int]) -> KeyPath:
    """Map a pydantic location to a path in the data, dropping the union tags it inserts."""
    path: list[str | int] = []
    current = data
    for part in loc:
        in_dict = isinstance(current, dict) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            current = current[part]
        elif (
            isinstance(current, dict)
            and isinstance(part, str)
            and (part == current.get("protocol") or "[" in part)
        ):
            continue  # a discriminator tag or validator name, not a key of the file
        else:
            current = None  # a missing key: reported at its parent's line
        path.append(part)
    return tuple(path)


def _line_of(lines: dict[KeyPath, int], path: KeyPath) -> int:
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path, 0)


def _humanise(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if (
        "input" in err
        and "secret" not in msg
        and kind not in ("union_tag_invalid", "model_type")
        and not isinstance(err["input"], dict | list)
    ):
        msg += f" (got {err['input']!r})"
    return msg


def _commands_need_mqtt5(data: dict[str, Any], file: str,
                         lines: dict[KeyPath, int]) -> list[ConfigProblem]:  # fmt: skip
    """Commands under an explicit MQTT 3.1.1: refused, since the gateway could not tell a
    retained command from a live one (see MqttConfig.protocol)."""
    commands, northbound = data.get("commands"), data.get("northbound")
    mqtt = northbound.get("mqtt") if isinstance(northbound, dict) else None
    if not (isinstance(commands, dict) and commands.get("enabled") is True
            and isinstance(mqtt, dict) and mqtt.get("protocol") == "3.1.1"):  # fmt: skip
        return []
    path = ("northbound", "mqtt", "protocol")
    return [ConfigProblem(
        file, _line_of(lines, path), path,
        "commands need MQTT 5: under 3.1.1 a broker forwards a retained command to the "
        "connected gateway as if it were live, and retained commands must never be executed; "
        "remove protocol (5 is the default with commands) or set protocol: '5'",
    )]  # fmt: skip


def _semantic_checks(data: Any, file: str, lines: dict[KeyPath, int]) -> list[ConfigProblem]:
    """Checks across items that field validation cannot see: unique names, commands and
    the MQTT version."""
    problems: list[ConfigProblem] = []
    if isinstance(data, dict):
        problems.extend(_commands_need_mqtt5(data, file, lines))
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
        return problems
    seen_devices: dict[str, int] = {}
    for d, device in enumerate(data["devices"]):
        if not isinstance(device, dict):
            continue
        name = device.get("name")
        if isinstance(name, str):
            path = ("devices", d, "name")
            if name in seen_devices:
                problems.append(
                    ConfigProblem(
                        file,
                        _line_of(lines, path),
                        path,
                        f"duplicate device name {name!r} (first on line {seen_devices[name]})",
                    )
                )
            else:
                seen_devices[name] = _line_of(lines, path)
        tags = device.get("tags")
        if not isinstance(tags, list):
            continue
        seen_tags: dict[str, int] = {}
        for t, tag in enumerate(tags):
            tag_name = tag.get("name") if isinstance(tag, dict) else None
            if not isinstance(tag_name, str):
                continue
            path = ("devices", d, "tags", t, "name")
            if tag_name in seen_tags:
                problems.append(
                    ConfigProblem(
                        file,
                        _line_of(lines, path),
                        path,
                        f"duplicate tag name {tag_name!r} in device "
                        f"{name!r} (first on line {seen_tags[tag_name]})",
                    )
                )
            else:
                seen_tags[tag_name] = _line_of(lines, path)
    return problems


def validate_yaml_text(
    model: type[_M],
    text: str,
    file: str,
    extra_checks: Callable[[Any, str, dict[KeyPath, int]], list[ConfigProblem]] | None = None,
) -> _M:
    """Validate YAML text into ``model``; raise :class:`ConfigError` listing every problem,
    each with file, line and key path (the machinery of the gateway config, for other files
    such as model manifests). ``extra_checks(data, file, lines)`` adds cross-field problems."""
    located = parse_yaml(text, file)
    problems = list(located.problems)
    data, lines = located.data, located.lines
    result: _M | None = None
    if data is not None:
        if not isinstance(data, dict):
            problems.append(ConfigProblem(file, 1, (), "the top level must be a mapping of keys"))
        else:
            try:
                result = model.model_validate(data)
            except ValidationError as exc:
                for err in exc.errors():
                    path = _resolve_loc(data, err["loc"])
                    problems.append(
                        ConfigProblem(file, _line_of(lines, path), path, _humanise(err))
                    )
            if extra_checks is not None:
                problems.extend(extra_checks(data, file, lines))
    if problems or result is None:
        problems.sort(key=lambda p: (p.line, p.path_text))
        raise ConfigError(problems)
    return result


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int:
    """The line of ``path`` in a parsed file, or of its nearest ancestor."""
    return _line_of(lines, path)


def _resolve_relative_paths(config: GatewayConfig, base: Path) -> GatewayConfig:
    def rel(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    return config.model_copy(
        update={
            "gateway": config.gateway.model_copy(
                update={"state_dir": rel(config.gateway.state_dir)}
            ),
            "models": config.models.model_copy(update={"dir": rel(config.models.dir)}),
            "devices": [device.with_base_dir(base) for device in config.devices],
            "northbound": _resolve_northbound_paths(config, rel),
            "commands": config.commands.model_copy(
                update={
                    "audit_log": None
                    if config.commands.audit_log is None
                    else rel(config.commands.audit_log)
                }
            ),
        }
    )


def _resolve_northbound_paths(
    config: GatewayConfig, rel: Callable[[Path], Path]
) -> NorthboundConfig:
    """The spool and the MQTT TLS files, relative to the config file's folder."""
    nb = config.northbound
    tls = nb.mqtt.tls
    if tls is not None:  # TLS files, like the spool, are relative to the config file
        tls = tls.model_copy(update={
            k: None if getattr(tls, k) is None else rel(getattr(tls, k))
            for k in ("ca", "certificate", "key")
        })
        nb = nb.model_copy(update={"mqtt": nb.mqtt.model_copy(update={"tls": tls})})
    if nb.spool.path is None:
        return nb
    return nb.model_copy(update={"spool": nb.spool.model_copy(update={"path": rel(nb.spool.path)})})


def load_config_text(
    text: str, file: str = "<config>", base_dir: Path | None = None
) -> GatewayConfig:
    """Validate config text; raise :class:`ConfigError` listing every problem found."""
    config = validate_yaml_text(GatewayConfig, text, file, _semantic_checks)
    return _resolve_relative_paths(config, base_dir or Path.cwd())


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read and validate a config file. Relative paths in it are relative to its folder."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(str(file), 0, (), f"cannot read: {exc.strerror}")]
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(str(file), 0, (), f"not UTF-8 text: {exc}")]) from exc
    return load_config_text(text, str(file), file.resolve().parent)


def resolve_secret(ref: SecretRef, base_dir: Path | None = None) -> str:
    """Read a secret from its environment variable or file; raise ConfigError when absent."""
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value is None:
            raise ConfigError(
                [
                    ConfigProblem(
                        "<environment>", 0, (), f"environment variable {ref.env} is not set"
                    )
                ]
            )
        return value
    assert ref.file is not None
    path = ref.file if ref.file.is_absolute() or base_dir is None else base_dir / ref.file
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(str(path), 0, (), f"cannot read secret file: {exc.strerror}")]
        ) from exc


def check_secrets(config: GatewayConfig, config_file: Path | None = None,
                  base_dir: Path | None = None) -> None:
    """Resolve every secret the config names; raise one ConfigError listing the missing ones,
    each at the line of its key in ``config_file`` when given."""
    lines: dict[KeyPath, int] = {}
    file = "<config>"
    if config_file is not None:
        file = str(config_file)
        base_dir = base_dir or config_file.resolve().parent
        with contextlib.suppress(OSError, UnicodeDecodeError):
            lines = parse_yaml(config_file.read_text(encoding="utf-8"), file).lines
    refs: list[tuple[KeyPath, SecretRef | None]] = [
        (("northbound", "mqtt", "password"), config.northbound.mqtt.password),
        (("http", "token"), config.http.token),
        (("northbound", "influxdb", "token"),
         config.northbound.influxdb.token if config.northbound.influxdb else None),
    ]
    for d, device in enumerate(config.devices):
        refs.extend((("devices", d, *key), ref) for key, ref in device.secret_refs())
    problems: list[ConfigProblem] = []
    for path, ref in refs:
        if ref is None:
            continue
        try:
            resolve_secret(ref, base_dir)
        except ConfigError as exc:
            problems.extend(ConfigProblem(file, _line_of(lines, path), path, p.message)
                            for p in exc.problems)
    if problems:
        raise ConfigError(problems)
