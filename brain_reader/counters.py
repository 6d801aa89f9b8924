"""What the reader counts; reported periodically and on exit."""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: what is counted per stream (a JSON gateway, a Sparkplug edge node) and handed over
#: between readers with its commits
STREAM_COUNTS = ("messages", "gaps", "late", "duplicates")


@dataclass(slots=True)
class IngestCounters:
    #: MQTT messages received (every topic)
    received: int = 0
    births: int = 0
    deaths: int = 0
    data_messages: int = 0
    #: payloads that could not be decoded (logged, skipped)
    undecodable: int = 0
    points: int = 0
    #: points accepted by the InfluxDB write API (2xx)
    written: int = 0
    write_errors: int = 0
    #: points refused by the server for their content (400/413/422)
    rejected: int = 0
    #: points dropped because too many waited while InfluxDB was unreachable
    dropped: int = 0
    #: sequence numbers skipped and not (yet) arrived; JSON holes filled later count as late
    gaps: int = 0
    late: int = 0
    duplicates: int = 0
    #: Sparkplug metrics with an alias no birth defined
    unknown_aliases: int = 0
    rebirths_requested: int = 0
    #: Sparkplug metrics flagged is_historical (a gateway's replay), stored with their times
    historical: int = 0
    #: messages from gateways not in the allow-list (not read)
    refused: int = 0
    #: gateways (streams) this reader took over from a reader that died (or was cut off)
    takeovers: int = 0
    #: gateways handed over to this reader by one that released them (left, rebalanced)
    handovers: int = 0
    #: messages written again after a takeover: the leaver had decoded them but not
    #: confirmed them written (the store overwrites identical points)
    rewritten: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def summary(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.as_dict().items())
