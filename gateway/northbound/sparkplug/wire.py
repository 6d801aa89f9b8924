"""Payload changes made at send time, after the message waited in the spool.

The spool keeps data payloads as encoded at flush time, without ``seq``: ``seq``
belongs to the MQTT session that finally sends the message. Protobuf parsers merge
repeated occurrences of a scalar field by keeping the last one, so appending a
serialized ``seq`` field (field 3, varint) to a serialized Payload sets it without
re-encoding the metrics.

Data encoded while no session is up is encoded historical (it can only be sent in a
later session, as replay), so replay sends it as it is: :func:`is_historical` reads
the first metric only. Marking a payload that was encoded live historical touches
every metric, so :func:`as_historical` decodes and re-encodes; that is the rare path
(messages in flight or queued when a connection dropped).
"""

from __future__ import annotations

from gateway.northbound.sparkplug import sparkplug_b_pb2 as pb

_SEQ_TAG = b"\x18"  # field 3, wire type 0 (varint)
_SEQ_SUFFIX = tuple(
    _SEQ_TAG + (bytes((s,)) if s < 0x80 else bytes((s & 0x7F | 0x80, s >> 7))) for s in range(256)
)
_METRICS = 2  # Payload.metrics: field 2, length-delimited


def with_seq(payload: bytes, seq: int) -> bytes:
    """``payload`` with ``seq`` (0-255) set, by appending the field."""
    if not 0 <= seq <= 255:
        raise ValueError(f"seq {seq} is outside 0-255")
    return payload + _SEQ_SUFFIX[seq]


def as_historical(payload: bytes) -> bytes:
    """``payload`` with ``is_historical`` set on every metric."""
    message = pb.Payload()
    message.ParseFromString(payload)
    for metric in message.metrics:
        metric.is_historical = True
    return message.SerializeToString()


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def is_historical(payload: bytes) -> bool:
    """Whether ``payload``'s metrics are historical, judged by the first one (the contract
    marks all metrics of a payload or none); a payload without metrics is. Reads the
    fields up to the first metric and decodes that metric only. Raises ValueError (or
    protobuf's DecodeError) on bytes that are not a Payload."""
    pos, end = 0, len(payload)
    try:
        while pos < end:
            key, pos = _varint(payload, pos)
            wire_type = key & 7
            if wire_type == 0:
                _, pos = _varint(payload, pos)
            elif wire_type == 1:
                pos += 8
            elif wire_type == 5:
                pos += 4
            elif wire_type == 2:
                length, pos = _varint(payload, pos)
                if key >> 3 == _METRICS:
                    if pos + length > end:
                        raise ValueError("truncated metric")
                    metric = pb.Payload.Metric()
                    metric.ParseFromString(payload[pos : pos + length])
                    return metric.is_historical
                pos += length
            else:
                raise ValueError(f"unexpected wire type {wire_type}")
    except IndexError:
        raise ValueError("truncated payload") from None
    if pos != end:
        raise ValueError("truncated payload")
    return True
