"""The JSON payload contract, version 1 (see docs/contract-json.md).

Topics: ``{topic_root}/{site}/{line}/{gateway}/{birth|data|death}``, a device's state
on ``.../device/{name}``; commands arrive on ``.../cmd`` and are answered on
``.../cmd-result``.
Data messages are column-oriented so a batch encodes with array ``tolist()``
calls instead of one Python dict per sample.

Its session rules (:class:`~gateway.northbound.contract.Contract`): a session is a
broker connection; it starts with the retained birth; each data message takes the next
number of a sequence that rises across restarts (:class:`SequenceStore`), given when it
is encoded (a message keeps it through the spool); a device going up or down sends its
own retained message, not the birth again; the will is the death, retained.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any

import numpy as np
import orjson
from prometheus_client.core import Metric

from gateway.commands.parse import Command, parse_command
from gateway.commands.result import CommandResult, json_safe
from gateway.config.device import registration_ids
from gateway.config.models import GatewayConfig
from gateway.northbound.contract import BirthContext, DeviceChange, PublisherControls
from gateway.northbound.message import OutboundMessage
from gateway.northbound.outbox import OutboxStats
from gateway.northbound.restricted import PublishableTags
from gateway.northbound.sequence import SequenceStore
from gateway.tags import TagCatalog
from gateway.types import QUALITY_NAME_ARRAY, QUALITY_NAMES, SampleBatch, as_float, now_ns

CONTRACT_VERSION = 1
#: catalog entries of the birth encoded at a time
_TAGS_PER_CHUNK = 1000
_NS_PER_MS = 1_000_000


class JsonContract:
    """Encodes births, data and deaths for one gateway, with the session rules above."""

    format = "json"
    take_back_unacked = False  # a message keeps its seq: the client re-sends it as it is

    def __init__(
        self,
        config: GatewayConfig,
        catalog: TagCatalog,
        gateway_version: str,
        sequence: SequenceStore | None = None,
        on_command: Callable[[str, bytes, bool], None] | None = None,
    ) -> None:
        """``sequence``: the data messages' numbers (a payload encoder alone needs none);
        ``on_command(topic, payload, retained)`` receives ``cmd`` messages (None: commands
        are off and ``cmd`` is not subscribed)."""
        ident = config.gateway
        root = config.northbound.topic_root.rstrip("/")
        self.base_topic = f"{root}/{ident.site}/{ident.line}/{ident.id}"
        self.qos = config.northbound.mqtt.qos
        self.commands_enabled = config.commands.enabled
        self.max_writes = config.commands.max_writes_per_command
        self.sequence = sequence
        self._on_command = on_command
        self._ident = ident
        self._version = gateway_version
        self.revise(config, catalog)
        #: the birth's catalog made ahead (:meth:`prepare_births`): catalog, mask, bytes
        self._prepared: tuple[TagCatalog, np.ndarray, bytes] | None = None
        self._publisher: PublisherControls | None = None
        #: the edge models in service (name, version, sha256, role) for the birth
        self.models_info: Callable[[], list[dict[str, Any]]] | None = None
        #: the version of the config running, for the birth
        self.config_version: Callable[[], int | None] | None = None
        #: the MCU firmware versions known, for the birth
        self.firmware_info: Callable[[], list[dict[str, Any]]] | None = None
        self._header = {
            "v": CONTRACT_VERSION,
            "gateway": ident.id,
            "site": ident.site,
            "line": ident.line,
        }
        #: the data messages' strings (header, quality names; tag paths: :meth:`revise`)
        #: are ASCII, which orjson writes as the stdlib does (:func:`_orjson_same`)
        self._ascii_header = all(str(v).isascii() for v in self._header.values()) and \
            all(q.isascii() for q in QUALITY_NAMES)

    def revise(self, config: GatewayConfig, catalog: TagCatalog) -> bool:
        """Follow the catalog and the devices of a config (at start, after a live change);
        the one birth lists them all, so it goes again after a change."""
        self.catalog = catalog
        self._publishable = PublishableTags(catalog, config.northbound.publish_restricted)
        #: per tag id: may it leave the gateway (restricted tags only when configured)
        self.publishable_mask = self._publishable.mask
        self.publishable = self._publishable.select
        #: device -> registration identifier (devices[].registration_id of the birth)
        self._registration = registration_ids(config.devices)
        self._ascii_paths = all(p.isascii() for p in catalog.paths.tolist() if p is not None)
        return True

    def topic(self, kind: str) -> str:
        return f"{self.base_topic}/{kind}"

    def _dumps(self, body: dict[str, Any] | list[Any]) -> bytes:
        return _dumps(body)

    def _device_entry(self, name: str, state: str) -> dict[str, str]:
        registration = self._registration.get(name)
        entry = {"name": name, "state": state}
        return entry if registration is None else {**entry, "registration_id": registration}

    def birth(
        self,
        session: int,
        next_seq: int,
        ts_ns: int,
        devices: dict[str, str],
        spool: OutboxStats | None = None,
    ) -> OutboundMessage:
        """The tag catalog: the data-registration record for the brain. Retained."""
        body: dict[str, Any] = {
            **self._header,
            "type": "birth",
            "session": session,
            "seq": next_seq,
            "ts": ts_ns // _NS_PER_MS,
            "gateway_version": self._version,
            "description": self._ident.description,
            "devices": [self._device_entry(name, state) for name, state in devices.items()],
            "commands": self.commands_enabled,
        }
        if spool is not None:
            body["spool"] = spool_summary(spool)
        if self.models_info is not None:
            body["models"] = self.models_info()
        if self.config_version is not None:
            body["config_version"] = self.config_version()
        if self.firmware_info is not None:
            body["firmware"] = self.firmware_info()
        head = self._dumps(body)
        payload = b"".join((head[:-1], b',"tags":', self._catalog_json(), b"}"))
        return OutboundMessage(self.topic("birth"), payload, "birth", self.qos, retain=True)

    async def prepare_births(self) -> None:
        """The birth's ``tags`` array made ahead, :data:`_TAGS_PER_CHUNK` tags a step of
        the event loop (the catalog and its mask are replaced, not changed, by a live
        change: the steps read them as they were). In one go it held every poll ~1 s at
        200,000 tags; in a worker thread the loop waited for the GIL at each of its socket
        calls meanwhile (stalls of 0.7 s at 2,000 devices, issue 21)."""
        catalog, mask = self.catalog, self.publishable_mask
        out = io.BytesIO()
        for _ in _write_catalog_json(catalog, mask, out):
            await asyncio.sleep(0)
        self._prepared = (catalog, mask, out.getvalue())

    def _catalog_json(self) -> bytes:
        """The birth's ``tags`` array: as :meth:`prepare_births` made it when the catalog
        is still the one it read, else made now."""
        prepared, self._prepared = self._prepared, None  # used once: 34 MB at 200,000 tags
        if prepared is not None and prepared[0] is self.catalog and \
                prepared[1] is self.publishable_mask:
            return prepared[2]
        return _catalog_json(self.catalog, self.publishable_mask)

    def device_message(self, session: int, ts_ns: int, name: str, state: str) -> OutboundMessage:
        """One device's new state, on its own retained topic ``.../device/{name}``: a device
        going up or down changes nothing else the birth says, so only this goes out (the
        birth of 200,000 tags is ~34 MB; 2,000 devices coming up sent it 2,000 times)."""
        body = {
            **self._header,
            "type": "device",
            "session": session,
            "ts": ts_ns // _NS_PER_MS,
            "device": self._device_entry(name, state),
        }
        return OutboundMessage(
            f"{self.topic('device')}/{name}", self._dumps(body), "device", self.qos, retain=True
        )

    def death_message(self, session: int, ts_ns: int, reason: str) -> OutboundMessage:
        """Sent on clean shutdown, and registered as the MQTT will. Retained."""
        body = {
            **self._header,
            "type": "death",
            "session": session,
            "ts": ts_ns // _NS_PER_MS,
            "reason": reason,
        }
        return OutboundMessage(
            self.topic("death"), self._dumps(body), "death", self.qos, retain=True
        )

    def event(self, event: dict[str, Any], ts_ns: int) -> OutboundMessage:
        """An event (e.g. a model alarm raised or cleared) on ``.../event``. Not retained."""
        body = {**self._header, "type": "event", "ts": ts_ns // _NS_PER_MS, **json_safe(event)}
        return OutboundMessage(self.topic("event"), self._dumps(body), "event", self.qos)

    def cmd_result(self, result: CommandResult, ts_ns: int) -> OutboundMessage:
        """The answer to a command: its outcome and one outcome per write. Not retained."""
        fields = result.answer_fields()
        body: dict[str, Any] = {
            **self._header,
            "type": "cmd-result",
            "id": fields.pop("id"),
            "ts": ts_ns // _NS_PER_MS,
            **fields,
        }
        return OutboundMessage(self.topic("cmd-result"), self._dumps(body), "cmd-result", 1)

    def data(self, batch: SampleBatch, seq: int, session: int, ts_ns: int) -> OutboundMessage:
        """One data message carrying every sample of ``batch``."""
        ids = batch.tag_ids
        values = batch.values
        if values.dtype == object:  # strings or 64-bit integers in the batch
            cells = values.copy()
            exact = self.catalog.is_string[ids] | self.catalog.is_wide[ids]
            numeric = ~exact
            if numeric.any():
                cells[numeric] = self._numeric_cells(ids[numeric], as_float(values[numeric]))
            # strings as they are, 64-bit integers as JSON integers (exact), bad ones null
            cells[exact] = [None if _is_nan(v) or v is None else v
                            for v in values[exact].tolist()]  # fmt: skip
            value_list: list[Any] = cells.tolist()
        else:
            value_list = self._numeric_cells(ids, values)
        body = {
            **self._header,
            "type": "data",
            "session": session,
            "seq": seq,
            "ts": ts_ns // _NS_PER_MS,
            "samples": {
                "tag": self.catalog.paths[ids].tolist(),
                "value": value_list,
                "ts": (batch.ts_ns // _NS_PER_MS).tolist(),
                "q": QUALITY_NAME_ARRAY[batch.quality].tolist(),
            },
        }
        fast = values.dtype != object and self._ascii_paths and self._ascii_header and \
            _orjson_same(values)
        return OutboundMessage(
            self.topic("data"),
            _dumps_fast(body) if fast else self._dumps(body),
            "data",
            self.qos,
            samples=len(batch),
            oldest_ns=int(batch.ts_ns.min()) if len(batch) else 0,
            seq=seq,
        )

    # --- the session rules (gateway.northbound.contract.Contract) -------------------------
    def attach(self, publisher: PublisherControls) -> None:
        self._publisher = publisher

    def _run_id(self) -> int:
        return self._publisher.session if self._publisher is not None else 0

    def subscriptions(self) -> tuple[tuple[str, int], ...]:
        return ((self.topic("cmd"), 1),) if self._on_command is not None else ()

    def will(self) -> OutboundMessage | None:
        return self.death_message(self._run_id(), now_ns(), "connection lost")

    def death(self, reason: str, ts_ns: int) -> OutboundMessage:
        return self.death_message(self._run_id(), ts_ns, reason)

    def connection_changed(self, connected: bool) -> None:
        pass

    def session_key(self, connected: bool, generation: int) -> Hashable | None:
        return generation if connected else None

    def births(self, context: BirthContext) -> list[OutboundMessage]:
        return [self.birth(context.run_id, self._sequence().peek, context.ts_ns,
                           context.devices, context.spool)]  # fmt: skip

    def withhold(self, batch: SampleBatch) -> SampleBatch:
        return batch

    def split(self, batch: SampleBatch, max_samples: int) -> list[SampleBatch]:
        if len(batch) <= max_samples:
            return [batch]
        return [batch.select(slice(start, start + max_samples))
                for start in range(0, len(batch), max_samples)]  # fmt: skip

    def encode(self, part: SampleBatch, ts_ns: int, live: bool) -> OutboundMessage:
        sequence = self._sequence()
        message = self.data(part, sequence.peek, self._run_id(), ts_ns)
        sequence.next()  # only once encoded: a part that failed takes no number
        return message

    def on_send(self, message: OutboundMessage, replay: bool) -> OutboundMessage:
        return message

    def answer(self, result: CommandResult, ts_ns: int) -> list[OutboundMessage]:
        return [self.cmd_result(result, ts_ns)]

    def device_state_changed(self, device: str, state: str, in_session: bool) -> DeviceChange:
        """Up or down within a session: the device's message, after its last samples; out
        of one, nothing (the next birth lists every device's state)."""
        if state not in ("up", "down") or not in_session:
            return DeviceChange()
        message = self.device_message(self._run_id(), now_ns(), device, state)
        return DeviceChange([message], flush_first=state == "down")

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if self._on_command is not None:
            self._on_command(topic, payload, retained)

    def parse_command(self, topic: str, payload: bytes) -> Command:
        return parse_command(payload, self._ident.id, self.max_writes)

    def metrics(self) -> Iterable[Metric]:
        return ()

    def _sequence(self) -> SequenceStore:
        if self.sequence is None:
            raise RuntimeError("a JSON contract in a publisher needs its SequenceStore")
        return self.sequence

    def _numeric_cells(self, ids: np.ndarray, values: np.ndarray) -> list[Any]:
        """JSON cells: bools as true/false, integer tags as integers, NaN as null."""
        cells = values.astype(object)
        nan = np.isnan(values)
        is_bool = self.catalog.is_bool[ids] & ~nan
        is_int = self.catalog.is_integer[ids] & ~nan
        if is_bool.any():
            cells[is_bool] = (values[is_bool] != 0).tolist()
        if is_int.any():
            cells[is_int] = values[is_int].astype(np.int64).tolist()
        if nan.any():
            cells[nan] = None
        listed: list[Any] = cells.tolist()
        return listed


def spool_summary(stats: OutboxStats) -> dict[str, Any]:
    """The birth's ``spool`` object: what is held and what was dropped, by reason."""
    return {
        "messages": stats.messages,
        "bytes": stats.bytes,
        "oldest_age_s": round(stats.oldest_age_s, 3),
        "dropped": {
            reason: {"messages": count.messages, "samples": count.samples}
            for reason, count in stats.drops.items()
        },
    }


def _orjson_same(values: np.ndarray) -> bool:
    """Would orjson write these values (floats, and the integers and booleans of
    :meth:`JsonContract._numeric_cells`) byte for byte as ``json.dumps`` does? It writes a
    float as Python's ``repr`` (the shortest that reads back the same) except for 1e-9 <=
    |x| < 1e-4 (``0.00001`` for ``1e-05``, ``1e-9`` for ``1e-09``), and writes an infinity
    as null where ``json.dumps`` refuses it: such a message goes through the stdlib
    (tests/gateway/test_contract_json_bytes.py compares both on millions of values)."""
    magnitude = np.abs(values)
    odd = (magnitude < 1e-4) & (magnitude >= 1e-9)
    return not (bool(odd.any()) or bool(np.isinf(magnitude).any()))


def _dumps_fast(body: dict[str, Any]) -> bytes:
    """``json.dumps(body, separators=(",", ":"), allow_nan=False)`` by orjson, for a body
    of ASCII strings, 64-bit integers, booleans, None and floats :func:`_orjson_same`
    passed: the same bytes, ~10x faster (a data message of 5,000 values: 4.4 -> 0.4 ms)."""
    try:
        return orjson.dumps(body)
    except TypeError:  # an integer beyond 64 bits: the stdlib writes it
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def _catalog_json(catalog: TagCatalog, mask: np.ndarray) -> bytes:
    """The birth's ``tags`` array of the tags ``mask`` lets out."""
    out = io.BytesIO()
    for _ in _write_catalog_json(catalog, mask, out):
        pass
    return out.getvalue()


def _write_catalog_json(catalog: TagCatalog, mask: np.ndarray, out: io.BytesIO) -> Iterator[None]:
    """Write :func:`_catalog_json` into ``out`` :data:`_TAGS_PER_CHUNK` entries a step: a
    list of 100,000 entry dicts took ~65 MB at once, and the peak stays in the RSS; each
    chunk is written out before the next is made (200 chunks of 170 KB kept until joined
    stayed in the RSS after they were freed when made in a worker thread: +50 MiB at
    200,000 tags)."""
    tags = [t for t in catalog.tags if mask[t.id]]
    out.write(b"[")
    for i in range(0, len(tags), _TAGS_PER_CHUNK):
        if i:
            out.write(b",")
        chunk = _dumps([t.catalog_entry() for t in tags[i:i + _TAGS_PER_CHUNK]])
        out.write(memoryview(chunk)[1:-1])
        yield
    out.write(b"]")


def _dumps(body: dict[str, Any] | list[Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and value != value


def decode_data(payload: bytes) -> list[dict[str, Any]]:
    """Reference decoder for receivers: a data message back into one dict per sample."""
    body = json.loads(payload)
    if body.get("v") != CONTRACT_VERSION or body.get("type") != "data":
        raise ValueError("not a chenxing v1 data message")
    s = body["samples"]
    return [
        {"tag": t, "value": v, "ts": ts, "quality": q, "seq": body["seq"]}
        for t, v, ts, q in zip(s["tag"], s["value"], s["ts"], s["q"], strict=True)
    ]
