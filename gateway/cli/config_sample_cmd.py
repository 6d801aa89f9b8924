"""``chenxing-gateway config sample [--driver NAME]``: the fully commented example config
from the installed package, whole or cut to one driver's device blocks (as Telegraf's
``telegraf config --input-filter``).

The sample is ``config/example.yaml`` as shipped (:mod:`gateway.shipped`). Its
``devices:`` section holds one block per registered protocol (a test keeps it so); the
drivers offered are the registrations' protocols and families (drivers/registry.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import click

from drivers.registration import DriverRegistry
from drivers.registry import REGISTRY
from gateway import exit_codes
from gateway.shipped import shipped_file

_BLOCK_START = re.compile(r"^  - name:")
_PROTOCOL = re.compile(r"^    protocol:\s*([\w-]+)")
_SECTION_END = re.compile(r"^(# ---|\S)")  # the next section's divider or top-level key


@dataclass(frozen=True, slots=True)
class ExampleConfig:
    """example.yaml cut into what comes before its device blocks, the blocks, and the rest."""

    head: list[str]
    blocks: list[tuple[str, list[str]]]  # (protocol, lines)
    tail: list[str]

    @classmethod
    def parse(cls, text: str) -> ExampleConfig:
        lines = text.splitlines(keepends=True)
        start = next(i for i, line in enumerate(lines) if line.rstrip() == "devices:") + 1
        end = next((i for i in range(start, len(lines)) if _SECTION_END.match(lines[i])),
                   len(lines))
        blocks: list[tuple[str, list[str]]] = []
        for line in lines[start:end]:
            if _BLOCK_START.match(line) or not blocks:
                blocks.append(("", []))
            blocks[-1][1].append(line)
        named = []
        for _, block in blocks:
            protocol = next((m.group(1) for ln in block if (m := _PROTOCOL.match(ln))), "")
            named.append((protocol, block))
        return cls(lines[:start], named, lines[end:])

    def protocols(self) -> list[str]:
        return [protocol for protocol, _ in self.blocks if protocol]

    def only(self, protocols: set[str]) -> str:
        """The config with the device blocks of ``protocols`` only."""
        kept = [ln for protocol, block in self.blocks if protocol in protocols for ln in block]
        return "".join(self.head + kept + self.tail)


def example_text() -> str:
    return shipped_file("config/example.yaml").read_text(encoding="utf-8")


def driver_names(registry: DriverRegistry = REGISTRY) -> dict[str, set[str]]:
    """Every name ``--driver`` takes: each protocol, and each family with its protocols."""
    names: dict[str, set[str]] = {}
    for protocol in registry.protocols:
        names.setdefault(protocol, set()).add(protocol)
        family = registry.get(protocol)
        if family is not None:
            names.setdefault(family.name, set()).add(protocol)
    return names


def sample_text(driver: str | None, registry: DriverRegistry = REGISTRY) -> str:
    """The example config, or its skeleton with ``driver``'s device blocks (a protocol or a
    family such as ``modbus``); ``KeyError`` for a name no registration offers, ``LookupError``
    for a registered protocol example.yaml has no block for."""
    text = example_text()
    if driver is None:
        return text
    protocols = driver_names(registry)[driver]
    example = ExampleConfig.parse(text)
    missing = protocols - set(example.protocols())
    if missing == protocols:
        raise LookupError(f"config/example.yaml has no device block for {driver}")
    return example.only(protocols)


@click.command("sample")
@click.option("--driver", "driver", default=None, metavar="NAME",
              help="only this driver's device blocks: a protocol (modbus_tcp, opcua, ...) or "
                   "a family (modbus, dlt645); see --list")
@click.option("--list", "list_drivers", is_flag=True, help="list the driver names and exit")
def config_sample(driver: str | None, list_drivers: bool) -> None:
    """Print the fully commented sample config of this installation (every key explained)."""
    names = driver_names()
    if list_drivers:
        for name in sorted(names):
            click.echo(f"{name:<12} {', '.join(sorted(names[name]))}")
        return
    if driver is not None and driver not in names:
        raise click.BadParameter(
            f"{driver!r} is no registered driver; one of: {', '.join(sorted(names))}",
            param_hint="--driver")
    try:
        click.echo(sample_text(driver), nl=False)
    except (OSError, LookupError) as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(exit_codes.RUNTIME_FAILURE) from None
