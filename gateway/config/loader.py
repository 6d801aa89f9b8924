"""Load a YAML config file and report every problem with its file, line and key path.

:mod:`gateway.config.yaml_reader` reads the file into plain data and a
``{key path: line}`` map, catching duplicate keys (which plain YAML loading silently
merges) and files too deep or too large. Pydantic's error locations are then mapped
back to lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from drivers.registration import DriverRegistry
from drivers.registry import REGISTRY
from gateway.config.bundles import bundle_problems
from gateway.config.device import TAG_SHARING, TagSharing
from gateway.config.models import (
    GatewayConfig,
    HttpConfig,
    NorthboundConfig,
    gateway_config_model,
)
from gateway.config.secrets import resolve_secret
from gateway.config.types import SecretRef
from gateway.config.yaml_model import (
    line_of,
    parse_yaml,
    validate_yaml_document,
)
from gateway.config.yaml_reader import KeyPath, LineMap
from gateway.errors import ConfigError, ConfigProblem, PortConflict
from gateway.serial_ports import SerialPorts


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
        file, line_of(lines, path), path,
        "commands need MQTT 5: under 3.1.1 a broker forwards a retained command to the "
        "connected gateway as if it were live, and retained commands must never be executed; "
        "remove protocol (5 is the default with commands) or set protocol: '5'",
    )]  # fmt: skip


def _semantic_checks(data: Any, file: str, lines: dict[KeyPath, int],
                     drivers: DriverRegistry = REGISTRY) -> list[ConfigProblem]:
    """Checks across items that field validation cannot see: unique names, commands and
    the MQTT version, writable tags of drivers that cannot write, serial-port conflicts."""
    problems: list[ConfigProblem] = []
    if isinstance(data, dict):
        problems.extend(_commands_need_mqtt5(data, file, lines))
        problems.extend(bundle_problems(data, file, lines))
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
        return problems
    # where a name was first seen, as its key path: a line is looked up only for a problem
    seen_devices: dict[str, KeyPath] = {}
    for d, device in enumerate(data["devices"]):
        if not isinstance(device, dict):
            continue
        name = device.get("name")
        if isinstance(name, str):
            path = ("devices", d, "name")
            if name in seen_devices:
                first = line_of(lines, seen_devices[name])
                problems.append(
                    ConfigProblem(
                        file,
                        line_of(lines, path),
                        path,
                        f"duplicate device name {name!r} (first on line {first})",
                    )
                )
            else:
                seen_devices[name] = path
        tags = device.get("tags")
        if not isinstance(tags, list):
            continue
        problems.extend(_writes_refused(device, d, file, lines, drivers))
        seen_tags: dict[str, int] = {}  # name -> index of its first tag (its line if needed)
        for t, tag in enumerate(tags):
            tag_name = tag.get("name") if isinstance(tag, dict) else None
            if not isinstance(tag_name, str):
                continue
            if tag_name in seen_tags:
                tag_path: KeyPath = ("devices", d, "tags", t, "name")
                first = line_of(lines, ("devices", d, "tags", seen_tags[tag_name], "name"))
                problems.append(
                    ConfigProblem(
                        file,
                        line_of(lines, tag_path),
                        tag_path,
                        f"duplicate tag name {tag_name!r} in device "
                        f"{name!r} (first on line {first})",
                    )
                )
            else:
                seen_tags[tag_name] = t
    problems.extend(_port_conflicts(data["devices"], file, lines, drivers))
    return problems


def _writes_refused(device: dict[str, Any], d: int, file: str, lines: dict[KeyPath, int],
                    drivers: DriverRegistry) -> list[ConfigProblem]:
    """Writable tags of a device whose driver cannot write (its registration says so)."""
    protocol = device.get("protocol")
    if drivers.get(protocol) is None or drivers.writes(protocol):
        return []
    problems = []
    for t, tag in enumerate(device["tags"]):
        if isinstance(tag, dict) and tag.get("writable") is True:
            path = ("devices", d, "tags", t, "writable")
            problems.append(ConfigProblem(
                file, line_of(lines, path), path,
                f"{protocol} devices cannot be written: writable must be false"))
    return problems


class _NoPort:
    """Stands for a port's shared object while ports are only checked, not opened."""

    def close(self) -> None:
        pass


def _port_conflicts(devices: list[Any], file: str, lines: dict[KeyPath, int],
                    drivers: DriverRegistry) -> list[ConfigProblem]:
    """Enabled devices on one serial port that could not share it (other protocols, other
    line settings, an instrument that needs the port alone), by the rules the runtime's
    :class:`~gateway.serial_ports.SerialPorts` applies when they connect. Reported at the
    ``port`` of each device after the first on the port; a device that is invalid on its
    own is left to its own errors."""
    ports = SerialPorts()
    problems: list[ConfigProblem] = []
    for d, raw in enumerate(devices):
        reg = drivers.get(raw.get("protocol")) if isinstance(raw, dict) else None
        if reg is None or reg.serial is None or raw.get("enabled") is False:
            continue
        try:  # by its own driver's config only (the whole union is built on first use)
            device = drivers.narrowed(reg.protocols).device_adapter.validate_python(raw)
        except ValidationError:
            continue
        claim = drivers.port_use(device)
        if claim is None:
            continue
        try:
            ports.claim(*claim, _NoPort)
        except PortConflict as exc:
            path = ("devices", d, "port")
            problems.append(ConfigProblem(file, line_of(lines, path), path, str(exc)))
    return problems


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
            "audit": config.audit.model_copy(
                update={"path": None if config.audit.path is None else rel(config.audit.path)}),
            "http": _resolve_http_paths(config, rel),
        }
    )


def _resolve_http_paths(config: GatewayConfig, rel: Callable[[Path], Path]) -> HttpConfig:
    """The local API's certificate, key and user store, relative to the config file's folder."""
    http = config.http
    auth = http.auth
    if auth.users_file is not None:
        http = http.model_copy(update={"auth": auth.model_copy(
            update={"users_file": rel(auth.users_file)})})
    if http.tls is not None:
        http = http.model_copy(update={"tls": http.tls.model_copy(
            update={"certificate": rel(http.tls.certificate), "key": rel(http.tls.key)})})
    return http


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


@dataclass(frozen=True, slots=True)
class ConfigDocument:
    """A validated config with what it was read from: its text, the data and the line of
    every key (an edit of the text can be read again in part: gateway/config/edit.py).

    ``data`` None: not kept (:meth:`without_data`: a gateway starts so, the data being
    ~280 bytes a tag, 27 MiB at 100,000 tags, wanted only by a live change or the config
    API), read again from the text by :meth:`read_data` the first time it is wanted."""

    text: str
    file: str
    base_dir: Path
    data: dict[str, Any] | None
    lines: LineMap
    config: GatewayConfig

    def read_data(self, prepare: Callable[[dict[str, Any]], None] | None = None
                  ) -> dict[str, Any]:
        """The data, read again from the text when it was not kept, then kept;
        ``prepare(data)`` is done to data read again before anyone else can see it."""
        data = self.data
        if data is None:
            parsed = parse_yaml(self.text, self.file).data
            if not isinstance(parsed, dict):  # the text was read as a config already
                raise ValueError(f"{self.file}: the config text no longer reads as a mapping")
            if prepare is not None:
                prepare(parsed)
            object.__setattr__(self, "data", parsed)  # frozen: kept once read, as lines are
            data = parsed
        return data

    def without_data(self) -> ConfigDocument:
        """This document without its data (read again when wanted: :meth:`read_data`)."""
        return dataclasses.replace(self, data=None)


def load_config_text(
    text: str, file: str = "<config>", base_dir: Path | None = None,
    drivers: DriverRegistry = REGISTRY,
) -> GatewayConfig:
    """Validate config text; raise :class:`ConfigError` listing every problem found.
    ``drivers``: the registered drivers whose device configs the file may hold."""
    return load_config_document(text, file, base_dir, drivers).config


def load_config_document(
    text: str, file: str = "<config>", base_dir: Path | None = None,
    drivers: DriverRegistry = REGISTRY,
) -> ConfigDocument:
    """:func:`load_config_text`, keeping the text, data and lines with the config."""
    base = base_dir or Path.cwd()
    config, located = validate_yaml_document(
        gateway_config_model(drivers), text, file, semantic_checks(drivers),
        functools.partial(_model_of_file, drivers=drivers), {TAG_SHARING: TagSharing()})
    return ConfigDocument(text, file, base, located.data, located.lines,
                          _resolve_relative_paths(config, base))


def _model_of_file(data: dict[str, Any], drivers: DriverRegistry) -> type[GatewayConfig]:
    """The config model whose devices are the configs of the protocols ``data`` names, when
    every device names a registered one: its validators are built on first use, so a file
    of Modbus devices does not pay for the other drivers' (config models defer their
    build: gateway/config/types.py). Its errors are those of the whole union, since each
    device is validated by the member its protocol selects. Any other file (a device
    without a known protocol, no devices) gets the whole union, whose errors name every
    protocol."""
    devices = data.get("devices")
    if not isinstance(devices, list) or not devices:
        return gateway_config_model(drivers)
    protocols: set[str] = set()
    for device in devices:
        protocol = device.get("protocol") if isinstance(device, dict) else None
        if not isinstance(protocol, str) or drivers.get(protocol) is None:
            return gateway_config_model(drivers)
        protocols.add(protocol)
    return gateway_config_model(drivers.narrowed(protocols))


def semantic_checks(drivers: DriverRegistry = REGISTRY
                    ) -> Callable[[Any, str, dict[KeyPath, int]], list[ConfigProblem]]:
    """The checks across items of a config file's data (unique names, ports...)."""
    return functools.partial(_semantic_checks, drivers=drivers)


def load_config(path: str | os.PathLike[str],
                drivers: DriverRegistry = REGISTRY) -> GatewayConfig:
    """Read and validate a config file. Relative paths in it are relative to its folder."""
    return load_config_file(path, drivers).config


def load_config_file(path: str | os.PathLike[str],
                     drivers: DriverRegistry = REGISTRY) -> ConfigDocument:
    """:func:`load_config`, keeping the text, data and lines with the config."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(str(file), 0, (), f"cannot read: {exc.strerror}")]
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(str(file), 0, (), f"not UTF-8 text: {exc}")]) from exc
    return load_config_document(text, str(file), file.resolve().parent, drivers)


def config_digest(path: str | os.PathLike[str]) -> bytes | None:
    """SHA-256 of a config file's bytes (None when it cannot be read): a reload of a file
    that did not change need not read it again."""
    with contextlib.suppress(OSError):
        return hashlib.sha256(Path(path).read_bytes()).digest()
    return None


def check_secrets(config: GatewayConfig, config_file: Path | None = None,
                  base_dir: Path | None = None, text: str | None = None,
                  file: str | None = None) -> None:
    """Resolve every secret the config names; raise one ConfigError listing the missing ones,
    each at the line of its key in ``config_file`` when given (or in ``text``, the config's
    text, reported as ``file``)."""
    file = file or "<config>"
    if config_file is not None:
        file = str(config_file)
        base_dir = base_dir or config_file.resolve().parent
    missing: list[tuple[KeyPath, ConfigProblem]] = []
    for path, ref in _secret_refs(config):
        try:
            resolve_secret(ref, base_dir)
        except ConfigError as exc:
            missing.extend((path, p) for p in exc.problems)
    if not missing:
        return
    lines: dict[KeyPath, int] = {}  # read only now: a large file takes a while to parse
    if config_file is not None:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = config_file.read_text(encoding="utf-8")
    if text is not None:
        lines = parse_yaml(text, file).lines
    raise ConfigError([ConfigProblem(file, line_of(lines, path), path, p.message)
                       for path, p in missing])


def _secret_refs(config: GatewayConfig) -> list[tuple[KeyPath, SecretRef]]:
    """Every secret the config names, at its key path."""
    refs: list[tuple[KeyPath, SecretRef | None]] = [
        (("northbound", "mqtt", "password"), config.northbound.mqtt.password),
        (("http", "token"), config.http.token),
        (("northbound", "influxdb", "token"),
         config.northbound.influxdb.token if config.northbound.influxdb else None),
    ]
    for d, device in enumerate(config.devices):
        refs.extend((("devices", d, *key), ref) for key, ref in device.secret_refs())
    return [(path, ref) for path, ref in refs if ref is not None]
