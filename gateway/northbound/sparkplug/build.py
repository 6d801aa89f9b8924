"""Build the Sparkplug edge node (the contract) for a :class:`~gateway.runtime.gateway.Gateway`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway import __version__
from gateway.northbound.sparkplug.bdseq import BdSeqStore
from gateway.northbound.sparkplug.edge_node import SparkplugEdgeNode
from gateway.northbound.sparkplug.payloads import CurrentValue, SparkplugPayloads
from gateway.types import Quality

if TYPE_CHECKING:
    from gateway.config.models import GatewayConfig
    from gateway.pipeline import Pipeline
    from gateway.tags import TagCatalog

BDSEQ_FILE = "sparkplug-bdseq.json"


def build_edge_node(
    config: GatewayConfig,
    catalog: TagCatalog,
    pipeline: Pipeline,
    device_states: Callable[[], dict[str, str]],
    on_command: Callable[[str, bytes, bool], None] | None,
    audit: Callable[..., None] | None,
) -> SparkplugEdgeNode:
    """The edge node of ``config``; DBIRTHs carry the pipeline's latest values."""
    qualities = {int(q) for q in Quality}

    def current(tag_id: int) -> CurrentValue:
        q = int(pipeline.latest_quality[tag_id])
        if q not in qualities:  # never read
            return CurrentValue(None, None, 0)
        return CurrentValue(pipeline.latest(tag_id), Quality(q), int(pipeline.latest_ns[tag_id]))

    return SparkplugEdgeNode(
        config, SparkplugPayloads(config, catalog, __version__),
        BdSeqStore(config.gateway.state_dir / BDSEQ_FILE), device_states, current,
        on_command, audit,
    )  # fmt: skip
