"""``chenxing-gateway watch``: a running gateway's (or any gateway's) telemetry on a broker,
decoded live: Sparkplug B with its aliases resolved from the births, or the JSON contract.

Like ``mosquitto_sub`` with the decoding done: one line per value (or one JSON object per
line with ``--json``), births, deaths and model alarm events as their own lines, filtered
by device and tag. A Sparkplug edge node whose birth the watcher missed is asked for a
rebirth (an NCMD ``Node Control/Rebirth``, as a Sparkplug host does; ``--no-rebirth``
keeps the watcher silent), so aliases are resolved within a moment of starting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from brain_reader.watch import TagFilter, WatchDecoder, WatchedMessage, line_of
from gateway import exit_codes
from gateway.config.loader import load_config
from gateway.config.models import MqttConfig
from gateway.errors import ConfigError
from gateway.northbound.message import OutboundMessage

#: seconds ``--once`` waits for a matching value unless ``--timeout`` says otherwise
ONCE_TIMEOUT = 30.0


@click.command()
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="take the broker (addresses, TLS, user, password), the format and the "
                   "topic root from this gateway config")
@click.option("--broker", "brokers", multiple=True, metavar="URL",
              help="mqtt://host:port or mqtts://host:port (repeat for failover); default: "
                   "the config's, else mqtt://127.0.0.1:1883")
@click.option("--username", default=None, help="MQTT user name")
@click.option("--password-env", default=None, metavar="VAR",
              help="environment variable holding the MQTT password")
@click.option("--format", "fmt", type=click.Choice(["auto", "sparkplug", "json"]),
              default="auto", show_default=True,
              help="which contract to decode (auto: both, or the config's)")
@click.option("--topic-root", default=None,
              help="JSON contract topic root (default: the config's, else chenxing/v1)")
@click.option("--device", "devices", multiple=True, metavar="GLOB",
              help="only these devices (repeatable; e.g. press-*)")
@click.option("--tag", "tags", multiple=True, metavar="GLOB",
              help="only these tags, by name or device.tag (repeatable; e.g. '*Temp*')")
@click.option("--once", is_flag=True,
              help="print the first message with a matching value, then exit (exit 7 when "
                   f"none came within --timeout, default {ONCE_TIMEOUT:g} s)")
@click.option("--timeout", type=float, default=None,
              help="stop after this many seconds")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per value (JSON lines)")
@click.option("--rebirth/--no-rebirth", default=True, show_default=True,
              help="ask a Sparkplug edge node whose birth was missed to send it again")
def watch(config_path: str | None, brokers: tuple[str, ...], username: str | None,
          password_env: str | None, fmt: str, topic_root: str | None,
          devices: tuple[str, ...], tags: tuple[str, ...], once: bool, timeout: float | None,
          as_json: bool, rebirth: bool) -> None:
    """Decode a gateway's MQTT telemetry live (Sparkplug B or JSON), aliases resolved."""
    mqtt, formats, root = _connection(config_path, brokers, username, password_env, fmt,
                                      topic_root)
    password = None
    if password_env is not None:
        password = os.environ.get(password_env)
        if password is None:
            raise click.UsageError(f"--password-env: {password_env} is not set")
    elif mqtt.password is not None and config_path is not None:
        from gateway.config.secrets import resolve_secret

        try:
            password = resolve_secret(mqtt.password, Path(config_path).resolve().parent)
        except ConfigError as exc:
            click.echo(str(exc), err=True)
            sys.exit(exit_codes.CONFIG_INVALID)
    if once and timeout is None:
        timeout = ONCE_TIMEOUT
    view = _View(as_json, once)
    code = asyncio.run(_watch(mqtt, password, formats, root, TagFilter(devices, tags),
                              view, timeout, rebirth))
    sys.exit(code)


def _connection(config_path: str | None, brokers: tuple[str, ...], username: str | None,
                password_env: str | None, fmt: str, topic_root: str | None,
                ) -> tuple[MqttConfig, tuple[str, ...], str]:  # fmt: skip
    """The MQTT connection, the formats to decode and the JSON topic root."""
    formats: tuple[str, ...] = ("sparkplug", "json") if fmt == "auto" else (fmt,)
    root = topic_root or "chenxing/v1"
    body: dict[str, Any] = {}
    if config_path is not None:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            click.echo(str(exc), err=True)
            sys.exit(exit_codes.CONFIG_INVALID)
        body = config.northbound.mqtt.model_dump(exclude_unset=True)
        if fmt == "auto":
            formats = (config.northbound.format,)
        root = topic_root or config.northbound.topic_root
    if brokers:
        body.pop("host", None)
        body.pop("port", None)
        body["urls"] = list(brokers)
    if username is not None:
        body["username"] = username
    if password_env is not None:
        body["password"] = {"env": password_env}
    body.update(client_id=f"chenxing-watch-{os.getpid()}", reconnect_min=0.5,
                reconnect_max=5.0)  # fmt: skip
    try:
        return MqttConfig.model_validate(body), formats, root
    except ValueError as exc:
        raise click.UsageError(f"--broker: {exc}") from None


class _View:
    """Prints what the watcher sees; counts the matching messages for ``--once``."""

    def __init__(self, as_json: bool, once: bool) -> None:
        self.as_json = as_json
        self.once = once
        self.matched = 0
        self.sources: set[str] = set()

    def show(self, message: WatchedMessage) -> bool:
        """Print ``message``; True when ``--once`` is satisfied."""
        self.sources.add(message.source)
        with_source = len(self.sources) > 1
        if message.kind in ("birth", "death", "event") and not self.once:
            self._event(message)
        if not message.values:
            return False
        self.matched += 1
        for value in message.values:
            if self.as_json:
                click.echo(json.dumps(value.as_dict(), separators=(",", ":")))
            else:
                click.echo(line_of(value, with_source))
        return self.once

    def _event(self, message: WatchedMessage) -> None:
        where = f"{message.source}/{message.device}" if message.device else message.source
        if self.as_json:
            record: dict[str, Any] = {"kind": message.kind, "source": message.source,
                                      "device": message.device}  # fmt: skip
            if message.event is not None:
                record["event"] = message.event
            click.echo(json.dumps(record, separators=(",", ":")))
            return
        if message.event is not None:
            detail = " ".join(f"{k}={v}" for k, v in message.event.items()
                              if k not in ("v", "type", "site", "line", "gateway"))
            click.echo(f"-- event of {where}: {detail}")
        else:
            count = f" ({message.total} values)" if message.total else ""
            click.echo(f"-- {message.kind} of {where}{count}")


async def _watch(mqtt: MqttConfig, password: str | None, formats: tuple[str, ...], root: str,
                 selected: TagFilter, view: _View, timeout: float | None,
                 rebirth: bool) -> int:  # fmt: skip
    from gateway.northbound.mqtt_link import MqttLink

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    link: MqttLink | None = None
    asked: list[str] = []

    def request_rebirth(topic: str, payload: bytes) -> None:
        if link is not None and link.connected.is_set():
            asked.append(topic)
            link.publish(OutboundMessage(topic, payload, "event", qos=0, id=-len(asked)))

    decoder = WatchDecoder(root, selected, request_rebirth if rebirth else None)

    def on_message(topic: str, payload: bytes, retained: bool) -> None:
        message = decoder.handle(topic, payload)
        if message is not None and view.show(message):
            stop.set()

    link = MqttLink(mqtt, mqtt.client_id or "chenxing-watch", None, password,
                    lambda _id: None, subscriptions=decoder.subscriptions(formats),
                    on_message=on_message)  # fmt: skip
    link.start()
    brokers = ", ".join(b.url for b in mqtt.brokers())
    if not view.as_json:
        click.echo(f"watching {brokers} ({' and '.join(formats)}); Ctrl-C to stop", err=True)
    if timeout is not None:
        loop.call_later(timeout, stop.set)
    with contextlib.suppress(asyncio.CancelledError):
        await stop.wait()
    await link.stop()
    if decoder.unknown_aliases and not view.matched:
        click.echo(f"{decoder.unknown_aliases} Sparkplug values came with aliases no birth "
                   "explained" + (" (a rebirth was asked for)" if asked else
                                  " (--no-rebirth: none was asked for)"), err=True)
    if view.once and not view.matched:
        if link.last_error and not link.connected.is_set():
            click.echo(f"no broker: {link.last_error}", err=True)
        else:
            click.echo("nothing matching arrived", err=True)
        return exit_codes.NOTHING_RECEIVED
    return exit_codes.OK
