"""The OPC UA client driver: subscriptions (or polled reads) batched into SampleBatches.

One asyncua client per connection (:class:`~drivers.opcua.asyncua_adapter.UaClient`,
the only way to asyncua), with auto-reconnect off: the device runner owns reconnects
and their backoff, and every reconnect builds a fresh client, session and subscription
(the old session is resumed or closed, so sessions do not pile up on the server).

Subscription mode: one subscription per device; one monitored item per distinct
(node, sampling interval, deadband). A publish response (a notification burst)
becomes one SampleBatch of float64 values, plus one of objects when string tags (or
64-bit integer tags with values beyond 2**53, kept exact as Python ints) changed in
it (the pipeline treats object batches apart). The connection is
watched three ways, all ending in :class:`ConnectionLost`: asyncua's watchdog (a
read of ServerState every ``watchdog_interval``, and the socket closing),
a bad StatusChangeNotification for the subscription, and a keep-alive deadline
(no publish response for 3 keep-alive periods).

Nodes the server does not know (BadNodeIdUnknown, or a browse path with no
match) give their tags BAD quality and are retried every ``unknown_node_retry``,
not on every poll or publish.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drivers.base import Driver, Emit, PollGroup
from drivers.opcua import asyncua_adapter, security
from drivers.opcua.asyncua_adapter import (
    BatchSubscription,
    UaClient,
    status_counter,
    ua,
    unreachable_reason,
)
from drivers.opcua.config import DataChangeDeadband, OpcUaDeviceConfig, OpcUaTagConfig
from drivers.opcua.convert import qualities, sample_value, timestamp_ns, to_variant
from gateway.errors import (
    ConnectionLost,
    ConversionError,
    DeviceUnreachable,
    DeviceWriteRefused,
    DriverError,
    RequestRefused,
)
from gateway.types import DataType, Quality, SampleBatch

#: ints up to this magnitude are exact in float64 (the fast path's float values)
_EXACT = 2**53

log = logging.getLogger(__name__)

_S = ua.StatusCodes
#: statuses meaning "this node is not there (now)": retried at ``unknown_node_retry``
MISSING = frozenset({
    _S.BadNodeIdUnknown, _S.BadNodeIdInvalid, _S.BadNoMatch, _S.BadBrowseNameInvalid,
})
_BAD_CONVERSION = _S.BadTypeMismatch
#: a publish response must come within this many keep-alive periods
KEEPALIVE_MARGIN = 3.0


@dataclass(slots=True, eq=False)
class _Node:
    """One node the driver reads or monitors, and the tags fed from it."""

    address: str
    positions: list[int]
    interval: float
    deadband: DataChangeDeadband | None
    node_id: ua.NodeId | None = None
    failing: int | None = None
    """status code while the node cannot be read or monitored"""
    retry_at: float = 0.0
    handle: int = 0
    monitored: bool = False
    variant_type: ua.VariantType | None = None
    tag_id: int = -1
    """the one numeric scalar tag fed from this node (the fast path of _samples), else -1"""


def subscription_parameters(config: OpcUaDeviceConfig) -> ua.CreateSubscriptionParameters:
    """The parameters of the driver's subscription (the benchmark's raw client uses them too)."""
    return asyncua_adapter.subscription_parameters(config.publishing_interval,
                                                   config.keepalive_count)


class OpcUaDriver(Driver):
    """One OPC UA server (a PLC, a machine controller, an OPC UA gateway)."""

    quality_while_lost = Quality.STALE

    def __init__(self, config: OpcUaDeviceConfig, tag_ids: Sequence[int]) -> None:
        super().__init__(config.name, tag_ids, len(config.tags))
        self.config = config
        self._tags: list[OpcUaTagConfig] = list(config.tags)
        default = config.publishing_interval if config.mode == "subscription" else (
            config.poll_interval)
        nodes: dict[tuple[Any, ...], _Node] = {}
        for pos, tag in enumerate(self._tags):
            interval = default if tag.sampling_interval is None else tag.sampling_interval
            deadband = tag.opcua_deadband if config.mode == "subscription" else None
            key = (tag.address, interval, deadband)
            if key not in nodes:
                nodes[key] = _Node(tag.address, [], interval, deadband)
            nodes[key].positions.append(pos)
        self._nodes = list(nodes.values())
        for i, node in enumerate(self._nodes):
            node.handle = i + 1
            if len(node.positions) == 1:
                tag = self._tags[node.positions[0]]
                if tag.type is not DataType.STRING and tag.index is None:
                    node.tag_id = self.tag_ids[node.positions[0]]
        self._node_of_tag: dict[int, _Node] = {
            pos: node for node in self._nodes for pos in node.positions
        }
        self._groups: list[PollGroup] = []
        self._group_nodes: dict[str, list[_Node]] = {}
        self._group_positions: dict[str, set[int]] = {}
        if config.mode == "poll":
            # string tags poll in groups of their own: a read returns one batch, and the
            # pipeline handles a batch of strings apart from a batch of numbers
            kinds: dict[tuple[float, bool], list[int]] = {}
            for pos, tag in enumerate(self._tags):
                interval = self._node_of_tag[pos].interval
                kinds.setdefault((interval, tag.type is DataType.STRING), []).append(pos)
            for (interval, text), positions in sorted(kinds.items()):
                name = f"every-{interval:g}s" + ("-strings" if text else "")
                self._groups.append(
                    PollGroup(name, interval, tuple(self.tag_ids[p] for p in positions))
                )
                self._group_nodes[name] = _unique(self._node_of_tag[p] for p in positions)
                self._group_positions[name] = set(positions)
        self._client: UaClient | None = None
        self._lost: asyncio.Future[str] | None = None
        self._subscription: BatchSubscription | None = None
        self._emit: Emit | None = None
        self._logged_conversion: set[tuple[int, str]] = set()
        #: where asyncua keeps the session token between connections (see _session_file)
        self._state_dir: str | None = None
        #: subscriptions of a lost connection, deleted once its session is resumed
        self._orphans: list[int] = []
        self._orphan_session: ua.NodeId | None = None

    def _session_file(self) -> Path:
        """A private file for asyncua's session resumption.

        After a broken connection the server keeps our session until it times out.
        Resuming it (ActivateSession on the new channel, OPC UA Part 4 6.7) instead
        of creating another keeps one session per device on the server; asyncua
        does this when ``Client.session_state_path`` holds the old token.
        """
        if self._state_dir is None:
            self._state_dir = tempfile.mkdtemp(prefix="chenxing-opcua-")
            weakref.finalize(self, shutil.rmtree, self._state_dir, True)
        return Path(self._state_dir) / "session.json"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._lost is not None and not self._lost.done()

    # -- connection -------------------------------------------------------------------
    async def connect(self) -> None:
        await self.close()
        cfg = self.config
        lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_lost(reason: str) -> None:
            if not lost.done():
                lost.set_result(reason)

        client = UaClient(cfg.endpoint, cfg.timeout, watchdog_interval=cfg.watchdog_interval,
                          session_timeout=cfg.session_timeout, session_file=self._session_file(),
                          on_lost=on_lost)
        session = False
        try:
            async with asyncio.timeout(cfg.timeout * 2):
                await security.configure(client.client, cfg)
                await client.connect()
            session = True
            self._client, self._lost = client, lost
            async with asyncio.timeout(cfg.timeout * 2):
                await self._delete_orphans(client)
                await self._resolve(self._nodes)
        except BaseException as exc:
            self._client, self._lost = None, None
            if session:
                await client.close()
            else:  # asyncua already unwound the channel and session it could not finish
                client.drop()
            if isinstance(exc, asyncio.CancelledError) or not isinstance(exc, Exception):
                raise
            reason = unreachable_reason(exc, cfg.endpoint, cfg.timeout * 2)
            log.debug("%s: %s", self.device_name, reason)
            raise DeviceUnreachable(reason) from exc
        log.info("%s: connected to %s (%s, %s)", self.device_name, cfg.endpoint,
                 cfg.security.policy if cfg.security.policy == "None"
                 else f"{cfg.security.policy} {cfg.security.mode}",
                 f"user {cfg.username}" if cfg.username else "anonymous")

    async def close(self) -> None:
        client, self._client = self._client, None
        lost, self._lost = self._lost, None
        sub, self._subscription = self._subscription, None
        for node in self._nodes:
            node.monitored = False
            node.variant_type = None  # read again: the server may have been reconfigured
            node.retry_at = 0.0  # missing nodes are tried again on the next connect
            if node.address.startswith(("/", "nsu=")):
                node.node_id = None  # browse paths and namespace URIs resolve on every connect
        broken = lost is not None and lost.done()
        if lost is not None and not lost.done():
            lost.set_result("closed")
        if client is None:
            return
        if broken:  # keep the session token so that the next connect resumes the session
            client.keep_session_file(False)
            if sub is not None and sub.subscription_id is not None:
                self._orphans.append(sub.subscription_id)
                self._orphan_session = client.session_token
        await client.close()

    async def _delete_orphans(self, client: UaClient) -> None:
        """Delete the subscriptions a resumed session still carries (best effort)."""
        orphans, self._orphans = self._orphans, []
        resumed = self._orphan_session == client.session_token
        self._orphan_session = None
        if orphans and resumed:
            try:
                await client.delete_subscriptions(orphans)
            except DriverError as exc:
                log.debug("%s: deleting old subscriptions: %s", self.device_name, exc)

    def _require(self) -> UaClient:
        if self._client is None or self._lost is None:
            raise ConnectionLost("not connected")
        if self._lost.done():
            raise ConnectionLost(self._lost.result())
        return self._client

    # -- nodes ------------------------------------------------------------------------
    async def _resolve(self, nodes: Sequence[_Node]) -> None:
        """Turn node id strings and browse paths into NodeIds; missing ones are marked."""
        client = self._require()
        paths: list[tuple[_Node, ua.BrowsePath]] = []
        for node in nodes:
            if node.node_id is not None:
                continue
            if node.address.startswith("/"):
                paths.append((node, _browse_path(node.address[1:])))
            elif node.address.startswith("nsu="):
                uri, _, rest = node.address[4:].partition(";")
                index = await client.namespace_index(uri)
                if index is None:
                    self._mark_missing(node, _S.BadNodeIdUnknown, f"namespace {uri} is unknown")
                    continue
                node.node_id = ua.NodeId.from_string(f"ns={index};{rest}")
            else:
                node.node_id = ua.NodeId.from_string(node.address)
        if paths:
            results = await client.translate([p for _, p in paths])
            for (node, _), result in zip(paths, results, strict=True):
                if result.StatusCode.is_good() and result.Targets:
                    target = result.Targets[0].TargetId
                    node.node_id = ua.NodeId(target.Identifier, target.NamespaceIndex,
                                             target.NodeIdType)
                else:
                    self._mark_missing(node, result.StatusCode.value, "browse path has no match")

    def _mark_missing(self, node: _Node, code: int, why: str) -> None:
        node.retry_at = time.monotonic() + self.config.unknown_node_retry
        if node.failing != code:
            log.warning("%s: %s: %s (%s); its tags are BAD, retried every %gs",
                        self.device_name, node.address, ua.StatusCode(code).name, why,
                        self.config.unknown_node_retry)
            self.errors[status_counter(code)] += 1
        node.failing = code

    def _mark_ok(self, node: _Node) -> None:
        if node.failing is not None:
            log.info("%s: %s is back", self.device_name, node.address)
        node.failing = None

    def _due(self, node: _Node, now: float) -> bool:
        return node.failing is None or node.retry_at <= now

    # -- samples ----------------------------------------------------------------------
    def _samples(self, entries: Sequence[tuple[_Node, ua.DataValue | None]], now_ns: int,
                 emit: Callable[[SampleBatch], None], only: set[int] | None = None) -> None:
        """Turn (node, DataValue) pairs into at most two batches: numbers, then objects
        (strings, and exact ints of 64-bit integer tags)."""
        num: tuple[list[int], list[float], list[int], list[int]] = ([], [], [], [])
        obj: tuple[list[int], list[object], list[int], list[int]] = ([], [], [], [])
        num_ids, num_values, num_ts, num_codes = num
        for node, dv in entries:
            if dv is not None and node.tag_id >= 0 and only is None:
                # fast path (a subscription's usual item): one numeric tag, a number, not bad
                status, variant = dv.StatusCode, dv.Value
                code = status.value if status is not None else 0
                raw: Any = variant.Value if variant is not None else None
                kind = type(raw)
                # (an int beyond 2**53 takes the slow path: float64 would round it)
                if code >> 30 < 2 and (kind is float or (kind is int and -_EXACT <= raw <= _EXACT)):
                    num_ids.append(node.tag_id)
                    num_values.append(float(raw))
                    num_ts.append(timestamp_ns(dv.SourceTimestamp or dv.ServerTimestamp, now_ns))
                    num_codes.append(code)
                    continue
            if dv is None:  # not read: still failing, waiting for its retry
                code, raw, ts = node.failing or _S.BadNodeIdUnknown, None, now_ns
            else:
                code = dv.StatusCode.value if dv.StatusCode is not None else 0
                raw = dv.Value.Value if dv.Value is not None else None
                ts = timestamp_ns(dv.SourceTimestamp or dv.ServerTimestamp, now_ns)
            bad = (code >> 30) >= 2
            if bad and dv is not None:  # count answers, not the re-marks of a skipped node
                self.errors[status_counter(code)] += 1
            for pos in node.positions:
                if only is not None and pos not in only:
                    continue
                tag = self._tags[pos]
                is_object = tag.type.is_object
                cols: Any = obj if is_object else num
                value: object = None if is_object else np.nan
                tag_code = code
                if not bad:
                    try:
                        value = sample_value(raw, tag)
                    except ConversionError as exc:
                        self.errors[exc.counter] += 1
                        if (pos, exc.counter) not in self._logged_conversion:
                            self._logged_conversion.add((pos, exc.counter))
                            log.warning("%s: %s; the tag is BAD", self.device_name, exc)
                        value, tag_code = (None if is_object else np.nan), _BAD_CONVERSION
                if type(value) is int and -_EXACT <= value <= _EXACT:
                    cols, value = num, float(value)  # exact in float64: the numeric batch
                cols[0].append(self.tag_ids[pos])
                cols[1].append(value)
                cols[2].append(ts)
                cols[3].append(tag_code)
        if num[0]:
            emit(SampleBatch(np.asarray(num[0], np.int32), np.asarray(num[1], np.float64),
                             np.asarray(num[2], np.int64), qualities(num[3])))
        if obj[0]:
            values = np.empty(len(obj[1]), dtype=object)
            values[:] = obj[1]
            emit(SampleBatch(np.asarray(obj[0], np.int32), values,
                             np.asarray(obj[2], np.int64), qualities(obj[3])))

    # -- polling ----------------------------------------------------------------------
    def poll_groups(self) -> Sequence[PollGroup]:
        return tuple(self._groups)

    async def read(self, group: PollGroup) -> SampleBatch:
        client = self._require()
        members = self._group_nodes[group.name]
        now = time.monotonic()
        try:
            due = [n for n in members if self._due(n, now)]
            unresolved = [n for n in due if n.node_id is None]
            if unresolved:
                await self._resolve(unresolved)
            to_read = [n for n in due if n.node_id is not None]
            values: dict[int, ua.DataValue] = {}
            if to_read:
                params = ua.ReadParameters()
                params.TimestampsToReturn = ua.TimestampsToReturn.Both
                params.NodesToRead = [_read_value_id(n.node_id) for n in to_read]
                results = await client.read(params)
                values = {n.handle: dv for n, dv in zip(to_read, results, strict=True)}
        except DriverError as exc:  # asyncua's errors, as map_asyncua_errors says them
            self.errors["connection_lost"] += 1
            raise ConnectionLost(f"read from {self.config.endpoint} failed: {exc}") from exc
        for node in to_read:
            dv = values[node.handle]
            code = dv.StatusCode.value if dv.StatusCode is not None else 0
            if code in MISSING:
                self._mark_missing(node, code, "the server does not know it")
            else:
                self._mark_ok(node)
        batches: list[SampleBatch] = []
        self._samples([(n, values.get(n.handle)) for n in members], time.time_ns(),
                      batches.append, self._group_positions[group.name])
        # one batch, or numbers and 64-bit integers (exact ints) of a group in two
        return SampleBatch.concat(batches)

    # -- subscription -----------------------------------------------------------------
    async def subscribe(self, emit: Emit) -> None:
        client = self._require()
        assert self._lost is not None
        lost = self._lost
        self._emit = emit
        try:
            reason = await self._subscribed(client, lost)
        except DriverError as exc:  # asyncua's errors, as map_asyncua_errors says them
            self.errors["connection_lost"] += 1
            why = lost.result() if lost.done() else str(exc)
            raise ConnectionLost(f"subscription on {self.config.endpoint} failed: {why}"
                                 ) from exc
        self.errors["connection_lost"] += 1
        raise ConnectionLost(reason)

    async def _subscribed(self, client: UaClient, lost: asyncio.Future[str]) -> str:
        """Subscribe, then watch the subscription; returns why it ended (the connection
        lost, no publish response in time)."""
        cfg = self.config
        sub = client.subscription(subscription_parameters(cfg), self._on_notifications)
        interval_s, keepalive_count = await sub.start()
        self._subscription = sub
        deadline_s = interval_s * keepalive_count * KEEPALIVE_MARGIN + cfg.timeout
        await self._monitor(sub, self._nodes)
        while True:
            done, _ = await asyncio.wait({lost}, timeout=min(1.0, cfg.unknown_node_retry))
            if done:
                return lost.result()
            now = time.monotonic()
            if sub.last_publish_at is not None and now - sub.last_publish_at > deadline_s:
                self.errors["keepalive_missed"] += 1
                return (f"no publish response nor keep-alive from {cfg.endpoint} for "
                        f"{now - sub.last_publish_at:.1f} s")
            retry = [n for n in self._nodes if not n.monitored and self._due(n, now)]
            if retry:
                await self._monitor(sub, retry)

    async def _monitor(self, sub: BatchSubscription, nodes: Sequence[_Node]) -> None:
        """Create monitored items for ``nodes``; failures are marked and reported BAD."""
        unresolved = [n for n in nodes if n.node_id is None]
        if unresolved:
            await self._resolve(unresolved)
        todo = [n for n in nodes if n.node_id is not None]
        requests = [self._item_request(n) for n in todo]
        results = await sub.monitor(requests) if requests else []
        failed: list[_Node] = [n for n in nodes if n.node_id is None]
        for node, res in zip(todo, results, strict=True):
            if isinstance(res, ua.StatusCode):
                self._mark_missing(node, res.value, "cannot monitor it")
                failed.append(node)
            else:
                node.monitored = True
                self._mark_ok(node)
        if failed and self._emit is not None:
            self._samples([(n, None) for n in failed], time.time_ns(), self._emit)

    def _item_request(self, node: _Node) -> ua.MonitoredItemCreateRequest:
        rv = _read_value_id(node.node_id)
        mp = ua.MonitoringParameters()
        mp.ClientHandle = node.handle
        mp.SamplingInterval = node.interval * 1000
        mp.QueueSize = self.config.queue_size
        mp.DiscardOldest = True
        if node.deadband is not None:
            flt = ua.DataChangeFilter()
            flt.Trigger = ua.DataChangeTrigger.StatusValue
            flt.DeadbandType = 1 if node.deadband.type == "absolute" else 2
            flt.DeadbandValue = node.deadband.value
            mp.Filter = flt
        request = ua.MonitoredItemCreateRequest()
        request.ItemToMonitor = rv
        request.MonitoringMode = ua.MonitoringMode.Reporting
        request.RequestedParameters = mp
        return request

    def _on_notifications(self, data: list[Any]) -> None:
        """One publish response: every data change in it becomes one batch (per value kind)."""
        entries: list[tuple[_Node, ua.DataValue | None]] = []
        for notification in data:
            if isinstance(notification, ua.DataChangeNotification):
                for item in notification.MonitoredItems:
                    index = item.ClientHandle - 1
                    if 0 <= index < len(self._nodes):
                        entries.append((self._nodes[index], item.Value))
            elif isinstance(notification, ua.StatusChangeNotification):
                status = notification.Status
                if status.is_bad() and self._lost is not None and not self._lost.done():
                    self._lost.set_result(f"the server ended the subscription ({status.name})")
        if entries and self._emit is not None:
            self._samples(entries, time.time_ns(), self._emit)

    # -- writing ----------------------------------------------------------------------
    async def write(self, tag_id: int, value: float | bool | str) -> None:
        pos = self.tag_position.get(tag_id)
        if pos is None:
            raise DeviceWriteRefused(f"tag id {tag_id} is not a tag of device {self.device_name!r}")
        tag = self._tags[pos]
        node = self._node_of_tag[pos]
        client = self._require()
        if node.node_id is None:
            raise DeviceWriteRefused(f"{tag.name}: node {node.address} is not known to the server")
        if tag.index is not None:
            raise DeviceWriteRefused(
                f"{tag.name}: writing one element of an array is not supported")
        try:
            if node.variant_type is None:
                node.variant_type = await client.variant_type(node.node_id)
            try:
                variant = to_variant(value, node.variant_type, tag.name)
            except ConversionError as exc:
                self.errors[exc.counter] += 1
                raise DeviceWriteRefused(str(exc)) from exc
            wv = ua.WriteValue()
            wv.NodeId = node.node_id
            wv.AttributeId = ua.AttributeIds.Value
            wv.Value = ua.DataValue(variant)
            params = ua.WriteParameters()
            params.NodesToWrite = [wv]
            status = (await client.write(params))[0]
        except RequestRefused as exc:  # a bad status for the service call
            self.errors[exc.counter] += 1
            raise DeviceWriteRefused(f"{tag.name}: {exc}") from exc
        except ConnectionLost as exc:
            self.errors["connection_lost"] += 1
            raise ConnectionLost(f"write to {self.config.endpoint} failed: {exc}") from exc
        if not status.is_good():
            self.errors[status_counter(status.value)] += 1
            raise DeviceWriteRefused(f"{tag.name}: the server refused the write: {status.name}")
        log.info("%s: wrote %s = %r (%s)", self.device_name, tag.name, variant.Value,
                 node.variant_type.name)


def _unique(nodes: Any) -> list[_Node]:
    return list(dict.fromkeys(nodes))


def _read_value_id(node_id: ua.NodeId | None) -> ua.ReadValueId:
    rv = ua.ReadValueId()
    assert node_id is not None
    rv.NodeId = node_id
    rv.AttributeId = ua.AttributeIds.Value
    return rv


def _browse_path(path: str) -> ua.BrowsePath:
    elements = []
    for part in path.split("/"):
        element = ua.RelativePathElement()
        element.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
        element.IsInverse = False
        element.IncludeSubtypes = True
        element.TargetName = ua.QualifiedName.from_string(part)
        elements.append(element)
    bp = ua.BrowsePath()
    bp.StartingNode = ua.NodeId(ua.ObjectIds.ObjectsFolder)
    bp.RelativePath = ua.RelativePath(Elements=elements)
    return bp
