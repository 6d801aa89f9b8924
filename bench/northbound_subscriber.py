"""The counting subscriber of ``bench/northbound.py``, run as a process of its own.

It subscribes (QoS 1) to everything the benchmark publishes and keeps, per stream,
the messages and bytes received, the distinct sequence numbers and the gaps:

- JSON v1 data (``.../data``): the 64-bit ``seq`` read from the payload's head;
  duplicates are messages whose ``seq`` was seen before; ``out_of_order`` counts
  messages with a lower ``seq`` than one already received (replayed backlog and live
  data interleave; receivers reorder by ``seq``). Losses are the sender's count of
  data messages minus the distinct ``seq`` received.
- Sparkplug B (``spBv1.0/{group}/{type}/{edge}[/{device}]``): one stream per edge
  node; ``seq`` (0-255) read from the field the edge node appends at send time;
  a gap is a message whose ``seq`` is not the previous one + 1 (NBIRTH restarts at 0,
  NDEATH has none).
- anything else (the raw paho runs): counted only.

Protocol on stdin/stdout, one line each: ``report TOPIC_PREFIX`` answers a JSON
object summing the streams whose key starts with the prefix; ``quit`` ends.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

_JSON_SEQ = re.compile(rb'"seq":(\d+)')


@dataclass(slots=True)
class Stream:
    messages: int = 0
    bytes: int = 0
    seqs: set[int] = field(default_factory=set)
    duplicates: int = 0
    gaps: int = 0
    out_of_order: int = 0
    last_seq: int | None = None
    sparkplug_data: int = 0


def sparkplug_seq(payload: bytes) -> int | None:
    """The ``seq`` field appended last by ``gateway.northbound.sparkplug.wire.with_seq``."""
    if len(payload) >= 2 and payload[-2] == 0x18 and payload[-1] < 0x80:
        return payload[-1]
    if len(payload) >= 3 and payload[-3] == 0x18 and payload[-2] >= 0x80:
        return (payload[-2] & 0x7F) | (payload[-1] << 7)
    return None


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.streams: dict[str, Stream] = {}

    def on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        payload = msg.payload
        if topic.startswith("spBv1.0/"):
            parts = topic.split("/")
            if len(parts) < 4 or parts[1] == "STATE":
                return
            key = f"spBv1.0/{parts[1]}/{parts[3]}"
            kind = parts[2]
            with self.lock:
                s = self.streams.setdefault(key, Stream())
                s.messages += 1
                s.bytes += len(payload)
                if kind in ("NDATA", "DDATA"):
                    s.sparkplug_data += 1
                if kind == "NDEATH":
                    return
                seq = sparkplug_seq(payload)
                if kind == "NBIRTH":
                    s.last_seq = seq
                    return
                if seq is None or s.last_seq is None or seq != (s.last_seq + 1) % 256:
                    s.gaps += 1
                s.last_seq = seq
            return
        with self.lock:
            s = self.streams.setdefault(topic, Stream())
            s.messages += 1
            s.bytes += len(payload)
            if topic.endswith("/data"):
                m = _JSON_SEQ.search(payload, 0, 400)
                if m is None:
                    return
                seq = int(m.group(1))
                if seq in s.seqs:
                    s.duplicates += 1
                    return
                if s.last_seq is not None and seq < s.last_seq:
                    s.out_of_order += 1
                s.seqs.add(seq)
                s.last_seq = seq if s.last_seq is None else max(seq, s.last_seq)

    def report(self, prefix: str) -> dict[str, int]:
        out = {"messages": 0, "bytes": 0, "distinct_seq": 0, "duplicates": 0, "gaps": 0,
               "out_of_order": 0, "sparkplug_data": 0}  # fmt: skip
        with self.lock:
            for key, s in self.streams.items():
                if key.startswith(prefix):
                    out["messages"] += s.messages
                    out["bytes"] += s.bytes
                    out["distinct_seq"] += len(s.seqs)
                    out["duplicates"] += s.duplicates
                    out["gaps"] += s.gaps
                    out["out_of_order"] += s.out_of_order
                    out["sparkplug_data"] += s.sparkplug_data
        return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    host, port = args[0], int(args[1])
    counter = Counter()
    ready = threading.Event()
    # a persistent session: with the broker's persistence, messages published while this
    # client reconnects after a broker restart are queued for it, not lost
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-northbound-sub",
                         clean_session=False)  # fmt: skip
    client.on_message = counter.on_message
    client.on_subscribe = lambda *a: ready.set()
    client.on_connect = lambda c, *a: c.subscribe([("#", 1)])
    client.reconnect_delay_set(0.05, 0.2)  # back before the publisher after a broker restart
    client.connect(host, port, 60)
    client.loop_start()
    if not ready.wait(10):
        print(json.dumps({"error": "not subscribed"}), flush=True)
        return 1
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "quit":
            break
        if command == "report":
            print(json.dumps(counter.report(arg)), flush=True)
    client.disconnect()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
