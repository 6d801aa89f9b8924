"""Payload changes made at send time, after the message waited in the spool.

The spool keeps data payloads as encoded at flush time, without ``seq``: ``seq``
belongs to the MQTT session that finally sends the message. Protobuf parsers merge
repeated occurrences of a scalar field by keeping the last one, so appending a
serialized ``seq`` field (field 3, varint) to a serialized Payload sets it without
re-encoding the metrics. Marking a replayed message historical touches every metric,
so that path decodes and re-encodes (replay is the rare, rate-limited path).
"""

from __future__ import annotations

from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb

_SEQ_TAG = b"\x18"  # field 3, wire type 0 (varint)


def with_seq(payload: bytes, seq: int) -> bytes:
    """``payload`` with ``seq`` (0-255) set, by appending the field."""
    if not 0 <= seq <= 255:
        raise ValueError(f"seq {seq} is outside 0-255")
    if seq < 0x80:
        return payload + _SEQ_TAG + bytes((seq,))
    return payload + _SEQ_TAG + bytes((seq & 0x7F | 0x80, seq >> 7))


def as_historical(payload: bytes) -> bytes:
    """``payload`` with ``is_historical`` set on every metric."""
    message = pb.Payload()
    message.ParseFromString(payload)
    for metric in message.metrics:
        metric.is_historical = True
    return message.SerializeToString()
