"""Build the Sparkplug edge node for a :class:`~gateway.runtime.gateway.Gateway`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway import __version__
from gateway.northbound.sparkplug.bdseq import BdSeqStore
from gateway.northbound.sparkplug.commands import SparkplugCommandParser
from gateway.northbound.sparkplug.contract import CurrentValue, SparkplugContract
from gateway.northbound.sparkplug.edge_node import SparkplugEdgeNode
from gateway.types import Quality

if TYPE_CHECKING:
    from gateway.northbound.outbox import Outbox
    from gateway.runtime.gateway import Gateway

BDSEQ_FILE = "sparkplug-bdseq.json"


def command_parser(gateway: Gateway) -> SparkplugCommandParser:
    contract = SparkplugContract(gateway.config, gateway.catalog, __version__)
    return SparkplugCommandParser(contract, gateway.config.commands.max_writes_per_command)


def build_edge_node(
    gateway: Gateway, outbox: Outbox, client_id: str, password: str | None
) -> SparkplugEdgeNode:
    config = gateway.config
    contract = SparkplugContract(config, gateway.catalog, __version__)
    pipeline = gateway.pipeline
    qualities = {int(q) for q in Quality}

    def current(tag_id: int) -> CurrentValue:
        q = int(pipeline.latest_quality[tag_id])
        if q not in qualities:  # never read
            return CurrentValue(None, None, 0)
        return CurrentValue(pipeline.latest(tag_id), Quality(q), int(pipeline.latest_ns[tag_id]))

    commands = gateway.commands
    return SparkplugEdgeNode(
        config, contract, outbox, BdSeqStore(config.gateway.state_dir / BDSEQ_FILE),
        client_id, password, gateway.device_states, current,
        gateway._on_command if commands is not None else None,
        commands.audit if commands is not None else None,
    )  # fmt: skip
