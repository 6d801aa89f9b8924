"""The data catalog: which plant, gateway and device publishes which tags since when, kept
from the births in one SQLite file (WAL) a brain operator can back up.

Tables: ``gateways`` (contract, plant = JSON site or Sparkplug group, line, gateway =
JSON gateway id or edge node id), ``devices`` (with the registration identifier from the
gateway config), ``tags`` (unit, type, description, classification, national data grade,
writable, first and last seen, still in the last birth or not) and ``history`` (one row
per birth that changed something, with what changed).

Everything written comes from the network: values are stored as text, bounded.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: tag fields compared between births
FIELDS = ("unit", "type", "description", "classification", "writable")
_MAX_TEXT = 1000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS gateways (
  gateway TEXT PRIMARY KEY, contract TEXT NOT NULL, plant TEXT NOT NULL, line TEXT,
  name TEXT NOT NULL, description TEXT, first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL, births INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS devices (
  gateway TEXT NOT NULL, device TEXT NOT NULL, registration_id TEXT,
  first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, PRIMARY KEY (gateway, device));
CREATE TABLE IF NOT EXISTS tags (
  gateway TEXT NOT NULL, device TEXT NOT NULL, tag TEXT NOT NULL, unit TEXT, type TEXT,
  description TEXT, classification TEXT, writable INTEGER, first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL, present INTEGER NOT NULL DEFAULT 1,
  PRIMARY KEY (gateway, device, tag));
CREATE TABLE IF NOT EXISTS history (
  id INTEGER PRIMARY KEY AUTOINCREMENT, gateway TEXT NOT NULL, device TEXT,
  ts INTEGER NOT NULL, changes TEXT NOT NULL);
"""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:_MAX_TEXT]


def _now_ms() -> int:
    return int(time.time() * 1000)


class Catalog:
    def __init__(self, path: Path, grading: Mapping[Any, str] | None = None) -> None:
        self.path = path
        self.grading: dict[str, str] = {str(k): str(v) for k, v in (grading or {
            "public": "general", "internal": "general", "restricted": "important"}).items()}
        self.db = sqlite3.connect(path, timeout=10, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.errors = 0

    def close(self) -> None:
        self.db.close()

    def grade(self, classification: str | None) -> str:
        """The national data grade of a classification (an unknown one: the strictest
        the grading uses for restricted data)."""
        return self.grading.get(classification or "", self.grading.get("restricted", "important"))

    # --- births --------------------------------------------------------------------------
    def json_birth(self, key: tuple[str, str, str], body: dict[str, Any]) -> None:
        site, line, gateway = key
        devices: dict[str, dict[str, Any]] = {}
        for entry in body.get("devices") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                reg = entry.get("registration_id")
                devices[entry["name"]] = {"registration_id": reg if isinstance(reg, str)
                                          else None, "tags": {}}  # fmt: skip
        for tag in body.get("tags") or []:
            if not isinstance(tag, dict):
                continue
            device, name = tag.get("device"), tag.get("name")
            if not isinstance(device, str) or not isinstance(name, str):
                continue
            entry = devices.setdefault(device, {"registration_id": None, "tags": {}})
            entry["tags"][name] = {f: tag.get(f) for f in FIELDS}
        self._record("json", f"{site}/{line}/{gateway}", site, line, gateway,
                     body.get("description"), devices, whole=True)  # fmt: skip

    def sparkplug_birth(self, topic: Any, payload: dict[str, Any]) -> None:
        group, edge = topic.group_id, topic.edge_node_id
        if topic.message_type == "NBIRTH" or topic.device_id is None:
            self._record("sparkplug", f"{group}/{edge}", group, None, edge, None, {}, False)
            return
        tags: dict[str, dict[str, Any]] = {}
        registration = None
        for metric in payload["metrics"]:
            name = metric["name"]
            if not isinstance(name, str):
                continue
            if name == "Properties/Registration ID":
                registration = metric["value"] if isinstance(metric["value"], str) else None
                continue
            props = metric["properties"]
            tags[name] = {"unit": props.get("engUnit"), "type": props.get("sourceType") or (
                metric["datatype"]), "description": props.get("description"),
                "classification": props.get("classification"),
                "writable": props.get("writable")}  # fmt: skip
        self._record("sparkplug", f"{group}/{edge}", group, None, edge, None,
                     {topic.device_id: {"registration_id": registration, "tags": tags}},
                     whole=False)  # fmt: skip

    def _record(self, contract: str, gateway: str, plant: str, line: str | None, name: str,
                description: Any, devices: dict[str, dict[str, Any]], whole: bool) -> None:
        """``whole``: the birth lists every device of the gateway (JSON); tags of devices
        it does not list are no longer present."""
        try:
            self._write(contract, gateway, plant, line, name, description, devices, whole)
        except sqlite3.Error as exc:
            self.errors += 1
            log.error("catalog %s: cannot record the birth of %s: %s", self.path, gateway, exc)

    def _write(self, contract: str, gateway: str, plant: str, line: str | None, name: str,
               description: Any, devices: dict[str, dict[str, Any]], whole: bool) -> None:
        now = _now_ms()
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO gateways VALUES (?,?,?,?,?,?,?,?,1) ON CONFLICT(gateway) DO "
                "UPDATE SET last_seen=excluded.last_seen, births=births+1, "
                "description=coalesce(excluded.description, description)",
                (gateway, contract, _text(plant), _text(line), _text(name), _text(description),
                 now, now),
            )  # fmt: skip
            old_devices = {r["device"] for r in db.execute(
                "SELECT DISTINCT device FROM tags WHERE gateway=? AND present=1", (gateway,))}
            listed = set(devices)
            for device in sorted(old_devices - listed) if whole else ():
                devices[device] = {"registration_id": None, "tags": {}, "gone": True}
            for device, entry in devices.items():
                self._device(gateway, device, entry, now)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _device(self, gateway: str, device: str, entry: dict[str, Any], now: int) -> None:
        db = self.db
        changes: dict[str, Any] = {}
        gone = entry.get("gone", False)
        reg = _text(entry.get("registration_id"))
        if not gone:
            row = db.execute("SELECT registration_id FROM devices WHERE gateway=? AND device=?",
                             (gateway, device)).fetchone()  # fmt: skip
            if row is None:
                changes["device"] = "added"
            elif row["registration_id"] != reg:
                changes["registration_id"] = [row["registration_id"], reg]
            db.execute("INSERT INTO devices VALUES (?,?,?,?,?) ON CONFLICT(gateway, device) DO "
                       "UPDATE SET last_seen=excluded.last_seen, "
                       "registration_id=excluded.registration_id",
                       (gateway, device, reg, now, now))  # fmt: skip
        old = {r["tag"]: r for r in db.execute(
            "SELECT * FROM tags WHERE gateway=? AND device=?", (gateway, device))}
        tags: dict[str, dict[str, Any]] = entry["tags"]
        added, changed = [], {}
        for tag, fields in tags.items():
            values = {f: _text(fields.get(f)) for f in FIELDS}
            row = old.get(tag)
            if row is None or not row["present"]:
                added.append(tag)
            else:
                diff = {f: [row[f], values[f]] for f in FIELDS if row[f] != values[f]}
                if diff:
                    changed[tag] = diff
            db.execute(
                "INSERT INTO tags VALUES (?,?,?,?,?,?,?,?,?,?,1) ON CONFLICT(gateway, device, tag)"
                " DO UPDATE SET unit=excluded.unit, type=excluded.type, "
                "description=excluded.description, classification=excluded.classification, "
                "writable=excluded.writable, last_seen=excluded.last_seen, present=1",
                (gateway, device, tag, *(values[f] for f in FIELDS), now, now),
            )  # fmt: skip
        removed = sorted(t for t, r in old.items() if r["present"] and t not in tags)
        if removed:
            db.executemany("UPDATE tags SET present=0 WHERE gateway=? AND device=? AND tag=?",
                           [(gateway, device, t) for t in removed])  # fmt: skip
        changes.update({k: v for k, v in (("added", sorted(added)), ("removed", removed),
                                          ("changed", changed)) if v})  # fmt: skip
        if changes:
            db.execute("INSERT INTO history (gateway, device, ts, changes) VALUES (?,?,?,?)",
                       (gateway, device, now, json.dumps(changes, sort_keys=True)))  # fmt: skip

    # --- reading -------------------------------------------------------------------------
    def gateways(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM gateways ORDER BY gateway")]

    def tags(self, public: bool = False, gateway: str | None = None) -> Iterator[dict[str, Any]]:
        """Every tag with its device's registration identifier and its grade; ``public``:
        restricted tags (and tags of an unknown classification) left out."""
        query = ("SELECT g.contract, g.plant, g.line, t.gateway, t.device, d.registration_id, "
                 "t.tag, t.unit, t.type, t.description, t.classification, t.writable, "
                 "t.first_seen, t.last_seen, t.present FROM tags t "
                 "JOIN gateways g ON g.gateway=t.gateway "
                 "LEFT JOIN devices d ON d.gateway=t.gateway AND d.device=t.device")
        args: tuple[Any, ...] = ()
        if gateway is not None:
            query += " WHERE t.gateway=?"
            args = (gateway,)
        for row in self.db.execute(query + " ORDER BY t.gateway, t.device, t.tag", args):
            tag = dict(row)
            if public and tag["classification"] not in ("public", "internal"):
                continue
            tag["grade"] = self.grade(tag["classification"])
            tag["writable"] = tag["writable"] in ("true", "1", "True")
            tag["present"] = bool(tag["present"])
            yield tag

    def history(self, gateway: str) -> list[dict[str, Any]]:
        return [{**dict(r), "changes": json.loads(r["changes"])} for r in self.db.execute(
            "SELECT device, ts, changes FROM history WHERE gateway=? ORDER BY id", (gateway,))]

    def show(self, gateway: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM gateways WHERE gateway=?", (gateway,)).fetchone()
        if row is None:
            return None
        devices = [dict(r) for r in self.db.execute(
            "SELECT device, registration_id, first_seen, last_seen FROM devices WHERE gateway=? "
            "ORDER BY device", (gateway,))]  # fmt: skip
        return {**dict(row), "devices": devices, "tags": list(self.tags(gateway=gateway)),
                "history": self.history(gateway)}
