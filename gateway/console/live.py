"""The console's view of the running line, refreshed once a tick (1 s): tiles' figures,
the line-wide summary, each tag's last good value and the trend ring.

One :class:`LineWatch` per local API reads the gateway's objects on the event loop (the
pipeline's per-tag arrays, the device runners' counters, the publisher's) and never
changes them. Each tick it

- records every tag's value and quality into the :class:`~gateway.console.trends.TrendRing`
  while the console is used: from the first event stream or trend request, as long as a
  stream is open and :data:`TREND_KEEP_S` after (then the ring is let go). A gateway
  nobody looks at spends no memory on trends: the ring is 1.5 KB a tag at 10,000 tags,
  as much as the rest of a tag's footprint (issue 21);
- keeps each tag's last good (or uncertain) value and its time, so a tag gone BAD still
  shows what it last was, and how long ago;
- marks the tags whose sample or quality changed with the tick's number, so each
  server-sent-event stream sends only what changed since it last sent (a slow browser
  skips ticks, it never misses a change, and nothing queues up for it);
- builds the status (one JSON text for every stream, only while a stream is open) with
  rates over the tick: samples/s per device, messages and samples published per second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from gateway.console.messages import MessageLog
from gateway.console.trends import DEFAULT_SLOTS, TrendRing
from gateway.status_page.snapshot import status_snapshot
from gateway.types import BAD_CODE, GOOD_CODE, QUALITY_NAMES, STALE_CODE, UNCERTAIN_CODE

if TYPE_CHECKING:
    from gateway.runtime.gateway import Gateway

log = logging.getLogger(__name__)

#: seconds between ticks
TICK_S = 1.0
#: the project's own loggers: "Recent warnings" shows these, and counts the rest (the
#: protocol libraries' own lines, e.g. pymodbus' "Repeating...." and connect errors, say
#: the same thing as the driver's line in the project's words)
OWN_LOGGERS = ("gateway", "drivers", "edge_models", "firmware_bridge", "chenxing")
#: seconds the trend ring keeps recording after the console was last used
TREND_KEEP_S = 3600.0
_NEVER = 255
_USABLE = np.array([GOOD_CODE, UNCERTAIN_CODE], np.uint8)


@dataclass(slots=True)
class _Counts:
    """Counters read at the last tick, for rates."""

    at: float
    samples: dict[str, int]
    messages: int
    published: int


class LineWatch:
    def __init__(self, gateway: Gateway, slots: int = DEFAULT_SLOTS) -> None:
        self.gateway = gateway
        #: the trend ring while the console is used (see :meth:`recording_trends`)
        self.trends: TrendRing | None = None
        self._slots = slots
        self._trends_until = 0.0  # time.monotonic() the ring is let go, unless used
        #: the last messages published (the Messages tab)
        self.messages = MessageLog(gateway)
        #: the tick's number; a tag changed at tick k has ``changed_at[id] == k``
        self.seq = 0
        self.changed_at: npt.NDArray[np.int64] = np.zeros(0, np.int64)
        self.good_value: npt.NDArray[np.float64] = np.zeros(0, np.float64)
        self.good_ms: npt.NDArray[np.int64] = np.zeros(0, np.int64)
        #: last good value of string and 64-bit integer tags (exact)
        self.good_objects: dict[int, object] = {}
        self._seen_ns: npt.NDArray[np.int64] = np.zeros(0, np.int64)
        self._seen_q: npt.NDArray[np.uint8] = np.zeros(0, np.uint8)
        #: bumped when the tag set changes (a live config change): streams send "catalog"
        self.catalog_version = 0
        self._catalog: object = None
        self._counts: _Counts | None = None
        self.rates: dict[str, Any] = {"devices": {}, "messages_per_s": 0.0,
                                      "samples_per_s": 0.0}
        #: the status of the last tick (as JSON), built while streams are open
        self.status_json = "{}"
        #: event streams open now
        self.streams = 0
        self._ticked = asyncio.Event()
        self.closing = asyncio.Event()

    # --- the tick ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Tick until cancelled."""
        while True:
            try:
                self.tick()
            except Exception:  # a bug here must not end the console, nor the gateway
                log.exception("console tick failed")
            await asyncio.sleep(TICK_S)

    def tick(self, now_ms: int | None = None) -> None:
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        gw = self.gateway
        catalog, pipeline = gw.catalog, gw.pipeline
        if catalog is not self._catalog:
            self._catalog = catalog
            self.catalog_version += 1
        n = min(len(catalog), len(pipeline.latest_quality))
        self._grow(n)
        quality = pipeline.latest_quality[:n]
        values = pipeline.latest_value[:n]
        ts_ns = pipeline.latest_ns[:n]
        usable = ((quality == GOOD_CODE) | (quality == UNCERTAIN_CODE)) & (ts_ns > 0)
        numeric_ok = usable & np.isfinite(values)
        self.good_value[:n][numeric_ok] = values[numeric_ok]
        self.good_ms[:n][usable] = ts_ns[usable] // 1_000_000
        for tag_id in np.flatnonzero(usable & (catalog.is_string[:n] | catalog.is_wide[:n])):
            self.good_objects[int(tag_id)] = pipeline.latest(int(tag_id))
        if self.trends is not None:
            if self.streams:
                self._trends_until = time.monotonic() + TREND_KEEP_S
            if time.monotonic() < self._trends_until:
                self.trends.record(now_ms, values, quality, numeric_ok)
            else:
                log.info("console unused for %.0f s: trend recording stopped", TREND_KEEP_S)
                self.trends = None

        changed = (ts_ns != self._seen_ns[:n]) | (quality != self._seen_q[:n])
        self.seq += 1
        self.changed_at[:n][changed] = self.seq
        self._seen_ns[:n] = ts_ns
        self._seen_q[:n] = quality

        self._rate(now_ms)
        self.messages.follow()
        if self.streams:  # nobody watching: no status to build
            self.status_json = json.dumps(self.status(quality), allow_nan=False, default=str)
        self._ticked.set()
        self._ticked = asyncio.Event()

    def recording_trends(self) -> TrendRing:
        """The trend ring, recording from now on if it was not (the console is used)."""
        self._trends_until = time.monotonic() + TREND_KEEP_S
        if self.trends is None:
            self.trends = TrendRing(self._slots)
        return self.trends

    def _grow(self, n: int) -> None:
        have = len(self.changed_at)
        if n <= have:
            return
        grow = n - have
        self.changed_at = np.concatenate([self.changed_at, np.full(grow, self.seq, np.int64)])
        self.good_value = np.concatenate([self.good_value, np.full(grow, np.nan)])
        self.good_ms = np.concatenate([self.good_ms, np.zeros(grow, np.int64)])
        self._seen_ns = np.concatenate([self._seen_ns, np.zeros(grow, np.int64)])
        self._seen_q = np.concatenate([self._seen_q, np.full(grow, _NEVER, np.uint8)])

    def _rate(self, now_ms: int) -> None:
        gw = self.gateway
        nb = gw.northbound
        counts = _Counts(
            at=time.monotonic(),
            samples={name: r.stats.samples_read for name, r in gw.runners.items()},
            messages=nb.counters.messages_published if nb is not None else 0,
            published=nb.counters.samples_published if nb is not None else 0)
        last, self._counts = self._counts, counts
        if last is None or counts.at <= last.at:
            return
        dt = counts.at - last.at
        self.rates = {
            "devices": {name: round(max(0, n - last.samples.get(name, n)) / dt, 1)
                        for name, n in counts.samples.items()},
            "messages_per_s": round(max(0, counts.messages - last.messages) / dt, 1),
            "samples_per_s": round(max(0, counts.published - last.published) / dt, 1),
        }

    async def next_tick(self, timeout: float) -> bool:
        """Wait for the next tick; False when ``timeout`` s passed or the console closes."""
        ticked = asyncio.ensure_future(self._ticked.wait())
        closing = asyncio.ensure_future(self.closing.wait())
        try:
            done, _ = await asyncio.wait({ticked, closing}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            ticked.cancel()
            closing.cancel()
        return ticked in done and not self.closing.is_set()

    # --- what is shown ------------------------------------------------------------------------
    def status(self, quality: npt.NDArray[np.uint8]) -> dict[str, Any]:
        gw = self.gateway
        body = status_snapshot(gw)
        catalog = gw.catalog
        n = len(quality)
        live = catalog.live[:n]
        bad = live & ((quality == BAD_CODE) | (quality == STALE_CODE))
        bad_by_device = np.bincount(catalog.device_of[:n][bad],
                                    minlength=len(catalog.device_index))
        rates = self.rates["devices"]
        for device in body["devices"]:
            index = catalog.device_index.get(device["name"])
            device["samples_per_s"] = rates.get(device["name"], 0.0)
            device["tags"] = len(catalog.ids_of_device(device["name"]))
            device["tags_bad"] = int(bad_by_device[index]) if index is not None else 0
        own: list[dict[str, Any]] = []
        hidden = 0
        for record in body["errors"]:
            if str(record["logger"]).split(".")[0] in OWN_LOGGERS:
                own.append(record)
            else:
                hidden += 1
        body["errors"] = own
        body["errors_hidden"] = hidden
        spool = body["spool"]
        body["summary"] = {
            "devices": len(body["devices"]),
            "devices_up": sum(1 for d in body["devices"] if d["state"] == "up"),
            "tags": int(live.sum()),
            "tags_bad": int(bad.sum()),
            "messages_per_s": self.rates["messages_per_s"],
            "samples_per_s": self.rates["samples_per_s"],
            "spool_depth": spool["queued"] + spool["inflight"],
            "spool_bytes": spool["bytes"],
        }
        body["writes_enabled"] = gw.commands is not None
        body["seq"] = self.seq
        body["catalog_version"] = self.catalog_version
        return body

    def tag_rows(self, since_seq: int) -> dict[str, Any]:
        """The tags changed after tick ``since_seq``: rows of id ``i``, value ``v``, quality
        code ``q``, time ``t`` (ms) and, when the sample is not good or uncertain, the last
        good value ``gv`` and its time ``gt`` (ms)."""
        n = len(self.changed_at)
        ids = np.flatnonzero(self.changed_at > since_seq)
        return self._columns(ids[ids < n])

    def _columns(self, ids: npt.NDArray[np.intp]) -> dict[str, Any]:
        gw = self.gateway
        pipeline, catalog = gw.pipeline, gw.catalog
        ids = ids[catalog.live[ids]] if len(ids) else ids
        values: list[Any] = _numbers(pipeline.latest_value[ids])
        good: list[Any] = _numbers(self.good_value[ids])
        exact = catalog.is_string[ids] | catalog.is_wide[ids]
        for i in np.flatnonzero(exact).tolist():
            tag_id = int(ids[i])
            values[i] = pipeline.latest(tag_id)
            good[i] = self.good_objects.get(tag_id)
        rows = [{"i": i, "v": v, "q": q, "t": t} for i, v, q, t in zip(
            ids.tolist(), values, pipeline.latest_quality[ids].tolist(),
            (pipeline.latest_ns[ids] // 1_000_000).tolist(), strict=True)]
        # the last good value only where the sample is not usable (it is the sample otherwise)
        unusable = ~np.isin(pipeline.latest_quality[ids], _USABLE)
        good_ms = self.good_ms[ids]
        for k in np.flatnonzero(unusable).tolist():
            rows[k]["gv"] = good[k]
            rows[k]["gt"] = int(good_ms[k])
        return {"seq": self.seq, "rows": rows}

    def catalog_rows(self) -> dict[str, Any]:
        """Every tag in service: what it is (path, unit, type, writable and range, alarm
        bands) and its latest figures (as :meth:`tag_rows`)."""
        gw = self.gateway
        catalog = gw.catalog
        bands = alarm_bands(gw)
        tags = []
        for info in catalog.tags:
            cfg = info.config
            tag: dict[str, Any] = {
                "id": info.id, "tag": info.path, "device": info.device, "unit": info.unit,
                "type": info.type.value, "numeric": not bool(catalog.is_string[info.id]),
                "writable": cfg.writable,
            }
            if cfg.range is not None:
                tag["range"] = list(cfg.range)
            if info.path in bands:
                tag["bands"] = bands[info.path]
            tags.append(tag)
        ids = np.array([t["id"] for t in tags], np.intp)
        n = len(self.changed_at)
        return {"seq": self.seq, "catalog_version": self.catalog_version,
                "qualities": list(QUALITY_NAMES), "tags": tags,
                "values": self._columns(ids[ids < n])}


def _numbers(values: npt.NDArray[np.float64]) -> list[float | None]:
    return [None if v != v else v for v in values.tolist()]


def alarm_bands(gw: Gateway) -> dict[str, list[dict[str, Any]]]:
    """Model output tag -> the thresholds of alarms on it (``above`` or ``below``)."""
    service = gw.models
    if service is None:
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for slot in service.engine.slots.values():
        outputs = slot.spec.outputs
        for alarm in slot.alarms:
            if alarm.column >= len(outputs):
                continue
            path = gw.catalog[alarm.tag_id].path.rsplit("/", 1)[0] + "/" + \
                outputs[alarm.column].name
            band: dict[str, Any] = {"alarm": alarm.name}
            if alarm.above is not None:
                band["above"] = alarm.above
            if alarm.below is not None:
                band["below"] = alarm.below
            out.setdefault(path, []).append(band)
    return out
