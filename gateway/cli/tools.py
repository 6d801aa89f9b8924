"""The drivers' own CLI tools (``scan``, ``browse``, ``certs``, ...), mounted from their
registrations and imported when used.

A registration lists its tools by name (``tools={"scan": "drivers.modbus.scan_cmd:scan"}``).
A tool offered by one driver is that driver's command (``chenxing-gateway scan ...``);
a name offered by several becomes a group with one subcommand per driver family
(``chenxing-gateway scan modbus ...``, ``chenxing-gateway scan s7 ...``) whose first
family, in registration order, also answers without its name: ``chenxing-gateway
scan --host ...`` stays the Modbus scan when another driver adds a ``scan``.
"""

from __future__ import annotations

from typing import Any

import click

from drivers.registration import DriverRegistry, load_ref
from drivers.registry import REGISTRY


class DriverToolsGroup(click.Group):
    """A click group that also offers the tools of the registered drivers, and commands
    imported only when run (:attr:`lazy`)."""

    drivers: DriverRegistry = REGISTRY
    #: commands by name, ``"module:command"``, imported when used: ``run`` need not pay
    #: for what ``firmware`` or ``tail`` import (aiohttp, rich: ~20 MB and a second)
    lazy: dict[str, str] = {
        "check": "gateway.cli.check_cmd:check",
        "firmware": "gateway.cli.firmware:firmware",
        "spool": "gateway.cli.spool_cmd:spool_group",
        "tail": "gateway.cli.tail_cmd:tail",
        "watch": "gateway.cli.watch_cmd:watch",
        "users": "gateway.cli.users_cmd:users",
        "audit": "gateway.cli.audit_cmd:audit",
        "bundle": "gateway.cli.bundle_cmd:bundle",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy, *self.drivers.tools()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        if cmd_name in self.lazy:
            return _load(self.lazy[cmd_name])
        offers = self.drivers.tools().get(cmd_name)
        return tool_command(cmd_name, offers) if offers else None


def tool_command(name: str, offers: list[tuple[str, str]]) -> click.Command:
    """The command of tool ``name`` offered as ``[(family, "module:command"), ...]``."""
    if len(offers) == 1:
        return _load(offers[0][1])
    families = [family for family, _ in offers]
    group = _ToolGroup(name, default=families[0], help=(
        f"{name} of a driver family: {', '.join(families)} (without a family: "
        f"{families[0]})."))
    for family, ref in offers:
        group.add_command(_load(ref), family)
    return group


class _ToolGroup(click.Group):
    """One tool of several drivers: ``TOOL FAMILY ARGS``, or ``TOOL ARGS`` for the default."""

    def __init__(self, name: str, default: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default, *args]
        return super().parse_args(ctx, args)


def _load(ref: str) -> click.Command:
    command = load_ref(ref)
    if not isinstance(command, click.Command):
        raise TypeError(f"command {ref} is not a click command")
    return command
