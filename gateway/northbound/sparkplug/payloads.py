"""The Sparkplug B 3.0 Edge Node's topics and payloads (docs/contract-sparkplug.md); its
session rules are in :mod:`.edge_node`.

The gateway is one Edge Node; every configured device is a Sparkplug device whose
metrics are its tags (metric name = tag name). Aliases: tag id + 1 for tags, then
the node metrics; they hold for one birth. Payloads are encoded without ``seq``;
the edge node sets it when it sends (see :mod:`gateway.northbound.sparkplug.wire`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.commands.result import CommandResult, json_safe
from gateway.config.device import registration_ids
from gateway.config.models import GatewayConfig
from gateway.northbound.message import OutboundMessage
from gateway.northbound.outbox import OutboxStats
from gateway.northbound.restricted import PublishableTags
from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb
from gateway.northbound.sparkplug.datatypes import (
    SPARKPLUG_TYPE,
    add_property,
    add_quality,
    set_value,
)
from gateway.tags import TagCatalog, TagInfo
from gateway.types import Quality, SampleBatch

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
LAST_COMMAND_RESULT = "Node Control/Last Command Result"
LAST_EVENT = "Node Info/Last Event"
DEVICES = "Node Info/Devices"
#: the version of the config running (gateway/config/store.py), in the NBIRTH
CONFIG_VERSION = "Node Info/Config Version"
#: the MCU firmware versions known (the inventory; JSON as the JSON birth's ``firmware``)
FIRMWARE = "Node Info/Firmware"
#: NCMD metrics the brain sends a signed bundle in (Bytes or File): docs/contract-sparkplug.md
CONFIG_APPLY = "Node Control/Config Apply"
MODEL_DEPLOY = "Node Control/Model Deploy"
BDSEQ = "bdSeq"
#: a DBIRTH metric: the device's registration identifier (devices[].registration_id in JSON)
REGISTRATION_ID = "Properties/Registration ID"
_NS_PER_MS = 1_000_000

#: node metrics besides bdSeq, in NBIRTH order: name -> DataType
NODE_METRICS: dict[str, int] = {
    REBIRTH: pb.Boolean,
    LAST_COMMAND_RESULT: pb.String,
    LAST_EVENT: pb.String,
    "Node Info/Gateway Version": pb.String,
    "Node Info/Gateway Id": pb.String,
    "Node Info/Site": pb.String,
    "Node Info/Line": pb.String,
    "Node Info/Description": pb.String,
    "Node Info/Session Start": pb.DateTime,
    "Node Info/Commands Enabled": pb.Boolean,
    DEVICES: pb.String,
    "Node Info/Models": pb.String,
    "Node Info/Spool Messages": pb.UInt64,
    "Node Info/Spool Bytes": pb.UInt64,
    "Node Info/Spool Oldest Age": pb.Double,
    "Node Info/Spool Dropped Messages": pb.UInt64,
    "Node Info/Spool Dropped Samples": pb.UInt64,
    CONFIG_VERSION: pb.UInt64,
    FIRMWARE: pb.String,
    CONFIG_APPLY: pb.Bytes,
    MODEL_DEPLOY: pb.Bytes,
}


@dataclass(frozen=True, slots=True)
class CurrentValue:
    """A tag's latest value for a DBIRTH (None when there is none yet)."""

    value: float | str | None
    quality: Quality | None
    ts_ns: int


class SparkplugPayloads:
    """Encodes NBIRTH, DBIRTH, NDATA, DDATA, DDEATH and NDEATH for one Edge Node."""

    format = "sparkplug"

    def __init__(self, config: GatewayConfig, catalog: TagCatalog, gateway_version: str) -> None:
        nb = config.northbound
        spb = nb.sparkplug
        ident = config.gateway
        self.group_id = spb.group_id or ident.site
        self.edge_node_id = spb.edge_node_id or ident.id
        self.data_qos = spb.data_qos
        #: data metrics carry their datatype (sparkplug.data_datatypes)
        self.data_datatypes = spb.data_datatypes
        self.commands_enabled = config.commands.enabled
        self._ident = ident
        self._version = gateway_version
        self.revise(config, catalog)
        #: the edge models in service, for the NBIRTH (set by the gateway)
        self.models_info: Callable[[], list[dict[str, Any]]] | None = None
        #: the version of the config running, for the NBIRTH (set by the gateway)
        self.config_version: Callable[[], int | None] | None = None
        #: the MCU firmware versions known, for the NBIRTH (set by the gateway)
        self.firmware_info: Callable[[], list[dict[str, Any]]] | None = None

    def revise(self, config: GatewayConfig, catalog: TagCatalog) -> bool:
        """Follow the catalog and the devices of a config (at start and after a live
        change). True when aliases moved (the node metrics' follow the tags', the devices'
        registration identifiers the node metrics'): then the NBIRTH must go again."""
        before = [getattr(self, k, None) for k in ("node_aliases", "_registration",
                                                    "_device_index")]
        self.catalog = catalog
        self._publishable = PublishableTags(catalog, config.northbound.publish_restricted)
        #: per tag id: may it leave the gateway (restricted tags only when configured)
        self.publishable_mask = self._publishable.mask
        self.publishable = self._publishable.select
        self.datatypes = np.array([SPARKPLUG_TYPE[t.type] for t in catalog.slots],
                                  dtype=np.int32)
        #: tag id -> device index, for grouping batches by device
        self._device_index = catalog.device_index
        self._device_of = catalog.device_of
        self.node_aliases = {
            name: len(catalog) + 1 + i for i, name in enumerate(NODE_METRICS)
        }
        #: device -> registration identifier, the DBIRTH metric ``Properties/Registration ID``
        #: (alias after the node metrics', one per device)
        self._registration = registration_ids(config.devices)
        return before != [self.node_aliases, self._registration, self._device_index]

    # --- topics -----------------------------------------------------------------------------
    def node_topic(self, message_type: str) -> str:
        return f"{NAMESPACE}/{self.group_id}/{message_type}/{self.edge_node_id}"

    def device_topic(self, message_type: str, device: str) -> str:
        return f"{NAMESPACE}/{self.group_id}/{message_type}/{self.edge_node_id}/{device}"

    def devices(self) -> list[str]:
        return self.catalog.devices()

    def alias(self, tag: TagInfo) -> int:
        return tag.id + 1

    # --- births and deaths ----------------------------------------------------------------------
    def ndeath(self, bdseq: int, ts_ns: int) -> OutboundMessage:
        """The NDEATH: only bdSeq, no seq; the MQTT will (QoS 1, not retained)."""
        payload = pb.Payload(timestamp=ts_ns // _NS_PER_MS)
        metric = payload.metrics.add(name=BDSEQ, datatype=pb.Int64, timestamp=payload.timestamp)
        metric.long_value = bdseq
        return OutboundMessage(self.node_topic("NDEATH"), payload.SerializeToString(), "death",
                               qos=1, retain=False)  # fmt: skip

    def nbirth(
        self,
        bdseq: int,
        ts_ns: int,
        session_start_ns: int,
        devices: dict[str, str],
        spool: OutboxStats | None,
        last_command_result: str | None,
        last_event: str | None,
    ) -> OutboundMessage:
        ms = ts_ns // _NS_PER_MS
        payload = pb.Payload(timestamp=ms)
        bd = payload.metrics.add(name=BDSEQ, datatype=pb.Int64, timestamp=ms)
        bd.long_value = bdseq
        values: dict[str, Any] = {
            REBIRTH: False,
            LAST_COMMAND_RESULT: last_command_result,
            LAST_EVENT: last_event,
            "Node Info/Gateway Version": self._version,
            "Node Info/Gateway Id": self._ident.id,
            "Node Info/Site": self._ident.site,
            "Node Info/Line": self._ident.line,
            "Node Info/Description": self._ident.description,
            "Node Info/Session Start": session_start_ns // _NS_PER_MS,
            "Node Info/Commands Enabled": self.commands_enabled,
            DEVICES: json.dumps(devices, separators=(",", ":")),
            "Node Info/Models": json.dumps(self.models_info() if self.models_info else [],
                                           separators=(",", ":")),
        }
        if self.config_version is not None:
            values[CONFIG_VERSION] = self.config_version()
        if self.firmware_info is not None:
            values[FIRMWARE] = json.dumps(self.firmware_info(), separators=(",", ":"))
        if spool is not None:
            values.update({
                "Node Info/Spool Messages": spool.messages,
                "Node Info/Spool Bytes": spool.bytes,
                "Node Info/Spool Oldest Age": round(spool.oldest_age_s, 3),
                "Node Info/Spool Dropped Messages": spool.dropped,
                "Node Info/Spool Dropped Samples": spool.dropped_samples,
            })  # fmt: skip
        for name, datatype in NODE_METRICS.items():
            metric = payload.metrics.add(
                name=name, alias=self.node_aliases[name], datatype=datatype, timestamp=ms
            )
            set_value(metric, datatype, values.get(name))
            if name == "Node Info/Spool Oldest Age":
                add_property(metric.properties, "engUnit", pb.String, "s")
        return OutboundMessage(self.node_topic("NBIRTH"), payload.SerializeToString(), "birth",
                               qos=0)  # fmt: skip

    def dbirth(
        self, device: str, ts_ns: int, current: Callable[[int], CurrentValue]
    ) -> OutboundMessage:
        """Every publishable tag of ``device`` with name, alias, datatype, properties and its
        current value (null until one was read)."""
        ms = ts_ns // _NS_PER_MS
        payload = pb.Payload(timestamp=ms)
        for tag_id in self.catalog.ids_of_device(device):
            if not self.publishable_mask[tag_id]:
                continue
            tag = self.catalog[tag_id]
            datatype = int(self.datatypes[tag_id])
            now = current(tag_id)
            metric = payload.metrics.add(
                name=tag.name, alias=self.alias(tag), datatype=datatype,
                timestamp=(now.ts_ns // _NS_PER_MS) if now.ts_ns else ms,
            )  # fmt: skip
            set_value(metric, datatype, now.value)
            self._birth_properties(metric.properties, tag, now.quality)
        registration = self._registration.get(device)
        if registration is not None:
            alias = len(self.catalog) + 1 + len(NODE_METRICS) + self._device_index[device]
            payload.metrics.add(name=REGISTRATION_ID, alias=alias, datatype=pb.String,
                                timestamp=ms, string_value=registration)  # fmt: skip
        return OutboundMessage(self.device_topic("DBIRTH", device), payload.SerializeToString(),
                               "birth", qos=0)  # fmt: skip

    def _birth_properties(
        self, props: pb.Payload.PropertySet, tag: TagInfo, quality: Quality | None
    ) -> None:
        cfg = tag.config
        add_property(props, "engUnit", pb.String, cfg.unit)
        add_property(props, "description", pb.String, cfg.description)
        add_property(props, "sourceDevice", pb.String, tag.device)
        add_property(props, "classification", pb.String, cfg.classification.value)
        add_property(props, "sourceType", pb.String, cfg.type.value)
        add_property(props, "writable", pb.Boolean, cfg.writable)
        if cfg.range is not None:
            add_property(props, "engLow", pb.Double, float(cfg.range[0]))
            add_property(props, "engHigh", pb.Double, float(cfg.range[1]))
        add_quality(props, quality if quality is not None else Quality.BAD)

    def ddeath(self, device: str, ts_ns: int) -> OutboundMessage:
        payload = pb.Payload(timestamp=ts_ns // _NS_PER_MS)
        return OutboundMessage(self.device_topic("DDEATH", device), payload.SerializeToString(),
                               "death", qos=0)  # fmt: skip

    # --- data ---------------------------------------------------------------------------------
    def data(
        self, batch: SampleBatch, ts_ns: int, max_samples: int, historical: bool = False
    ) -> list[OutboundMessage]:
        """DDATA messages, one per device (split past ``max_samples``), metrics by alias only;
        ``historical``: every metric ``is_historical`` (data that can only go out as replay)."""
        parts = self.split(batch, max_samples)
        return [self.device_data(part, ts_ns, historical) for part in parts]

    def split(self, batch: SampleBatch, max_samples: int) -> list[SampleBatch]:
        """One part per device (a DDATA carries one device's metrics), split past
        ``max_samples``."""
        parts: list[SampleBatch] = []
        if not len(batch):
            return parts
        devices = self._device_of[batch.tag_ids]
        for index in np.unique(devices):
            rows = np.flatnonzero(devices == index)
            for start in range(0, len(rows), max_samples):
                parts.append(batch.select(rows[start : start + max_samples]))
        return parts

    def device_data(self, batch: SampleBatch, ts_ns: int, historical: bool = False
                    ) -> OutboundMessage:  # fmt: skip
        """The DDATA of one device's samples (a part of :meth:`split`)."""
        device = self.catalog[int(batch.tag_ids[0])].device
        payload = pb.Payload(timestamp=ts_ns // _NS_PER_MS)
        ids = batch.tag_ids.tolist()
        values = batch.values.tolist()
        stamps = (batch.ts_ns // _NS_PER_MS).tolist()
        qualities = batch.quality.tolist()
        datatypes = self.datatypes[batch.tag_ids].tolist()
        good = int(Quality.GOOD)
        # proto2: an explicit is_historical=False would be encoded too; set it only when true
        flags = {"is_historical": True} if historical else {}
        typed = self.data_datatypes
        for tag_id, value, ms, quality, datatype in zip(
            ids, values, stamps, qualities, datatypes, strict=True
        ):
            metric = payload.metrics.add(alias=tag_id + 1, timestamp=ms, **flags)
            if typed:
                metric.datatype = datatype
            set_value(metric, datatype, value)
            if quality != good:
                add_quality(metric.properties, Quality(quality))
        return OutboundMessage(
            self.device_topic("DDATA", device), payload.SerializeToString(), "data",
            self.data_qos, samples=len(batch), oldest_ns=int(batch.ts_ns.min()),
        )  # fmt: skip

    def device_values(
        self, device: str, values: Iterable[tuple[TagInfo, Any]], ts_ns: int
    ) -> OutboundMessage:
        """A DDATA of given engineering values (e.g. just written by a command)."""
        payload = pb.Payload(timestamp=ts_ns // _NS_PER_MS)
        for tag, value in values:
            metric = payload.metrics.add(alias=self.alias(tag), timestamp=payload.timestamp)
            datatype = int(self.datatypes[tag.id])
            if self.data_datatypes:
                metric.datatype = datatype
            set_value(metric, datatype, value)
        return OutboundMessage(self.device_topic("DDATA", device), payload.SerializeToString(),
                               "cmd-result", qos=0)  # fmt: skip

    def node_data(self, name: str, value: Any, ts_ns: int, kind: str = "event") -> OutboundMessage:
        """An NDATA of one node metric (by alias)."""
        payload = pb.Payload(timestamp=ts_ns // _NS_PER_MS)
        metric = payload.metrics.add(alias=self.node_aliases[name], timestamp=payload.timestamp)
        if self.data_datatypes:
            metric.datatype = NODE_METRICS[name]
        set_value(metric, NODE_METRICS[name], value)
        return OutboundMessage(self.node_topic("NDATA"), payload.SerializeToString(),
                               kind, qos=0)  # type: ignore[arg-type]  # fmt: skip

    # --- answers and events (the gateway's contract interface) -----------------------------------
    def cmd_result(self, result: CommandResult, ts_ns: int) -> OutboundMessage:
        return self.node_data(LAST_COMMAND_RESULT, command_result_text(result), ts_ns,
                              "cmd-result")  # fmt: skip

    def event(self, event: dict[str, Any], ts_ns: int) -> OutboundMessage:
        text = json.dumps(json_safe(event), separators=(",", ":"), default=str, allow_nan=False)
        return self.node_data(LAST_EVENT, text, ts_ns, "event")


def command_result_text(result: CommandResult) -> str:
    """The value of ``Node Control/Last Command Result``: the outcome as compact JSON."""
    return json.dumps(json_safe(result.answer_fields()), separators=(",", ":"), default=str,
                      allow_nan=False)
