"""What the northbound sends: a topic, a payload and how to send it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MessageKind = Literal["birth", "data", "death", "device", "cmd-result", "event"]


@dataclass(slots=True)
class OutboundMessage:
    topic: str
    payload: bytes
    kind: MessageKind
    qos: int = 1
    retain: bool = False
    samples: int = 0
    #: nanosecond timestamp of the oldest sample, for latency accounting
    oldest_ns: int = 0
    #: set by the outbox
    id: int = field(default=0)
    #: the data message's sequence number (None for births and deaths)
    seq: int | None = None

    @property
    def size(self) -> int:
        """Bytes counted against the spool's limit: payload and topic."""
        return len(self.payload) + len(self.topic)

    def with_payload(self, payload: bytes) -> OutboundMessage:
        """A copy with ``payload`` (``dataclasses.replace`` costs ~10x more on the
        per-message send path)."""
        return OutboundMessage(self.topic, payload, self.kind, self.qos, self.retain,
                               self.samples, self.oldest_ns, self.id, self.seq)  # fmt: skip
