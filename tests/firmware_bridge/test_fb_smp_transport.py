"""SharedLineTransport drops broken SMP answers (counted) instead of passing them to smpclient."""

from __future__ import annotations

import asyncio

from smp import packet as smppacket

from firmware_bridge.smp_transport import SharedLineTransport


class _Port:
    smp_sink: object = None

    def write_raw(self, data: bytes) -> None:
        pass


def _lines(frame: bytes) -> list[bytes]:
    return list(smppacket.encode(frame, line_length=128))


def test_an_answer_shorter_than_the_smp_header_is_dropped_and_counted() -> None:
    good = bytes([1, 0, 0, 0, 0, 0, 7, 0])  # READ_RSP, no body

    async def main() -> bytes:
        transport = SharedLineTransport(_Port())
        for line in _lines(b"\x01\x02\x03") + _lines(good):
            transport.feed(line)
        answer = await asyncio.wait_for(transport.receive(), 1)
        assert transport.broken_answers == 1
        return answer

    assert asyncio.run(main()) == good
