"""SharedLineTransport drops broken SMP answers (counted) instead of passing them to smpclient."""

from __future__ import annotations

import asyncio

import cbor2
import pytest
from smp import packet as smppacket
from smpclient import SMPClient
from smpclient.exceptions import SMPValidationException
from smpclient.requests.os_management import EchoWrite

from firmware_bridge.smp_adapter import (
    DEFAULT_MAX_MESSAGE,
    FRAME_OVERHEAD,
    SharedLineTransport,
    SmpSession,
)


class _Port:
    smp_sink: object = None

    def write_raw(self, data: bytes) -> None:
        pass


def _lines(frame: bytes) -> list[bytes]:
    return list(smppacket.encode(frame, line_length=128))


def test_an_answer_shorter_than_the_smp_header_is_dropped_and_counted() -> None:
    good = bytes([1, 0, 0, 1, 0, 0, 7, 0, 0xA0])  # READ_RSP, an empty map

    async def main() -> bytes:
        transport = SharedLineTransport(_Port())
        for line in _lines(b"\x01\x02\x03") + _lines(good):
            transport.feed(line)
        answer = await asyncio.wait_for(transport.receive(), 1)
        assert transport.broken_answers == 1
        return answer

    assert asyncio.run(main()) == good


def _answer(body: bytes, group: int = 0, command: int = 0, sequence: int = 0) -> bytes:
    """An SMP answer (WRITE_RSP, version 1) with ``body`` as it is."""
    head = bytes([0x0B, 0]) + len(body).to_bytes(2, "big") + group.to_bytes(2, "big")
    return head + bytes([sequence, command]) + body


class _EchoNode(_Port):
    """Answers each request with the next list of ``answers`` (the request's sequence)."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        self.answers = answers
        self.transport: SharedLineTransport | None = None
        self._request = bytearray()

    def write_raw(self, data: bytes) -> None:
        self._request += data
        if not data.endswith(b"\n") or self.transport is None:
            return
        decoder = smppacket.decode()
        next(decoder)
        try:
            for line in bytes(self._request).splitlines(keepends=True):
                decoder.send(line)
        except StopIteration as done:
            request = bytes(done.value)
            self._request.clear()
            for answer in self.answers.pop(0):
                with_seq = answer[:6] + bytes([request[6]]) + answer[7:]
                for line in _lines(with_seq):
                    self.transport.feed(line)


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        (_answer(b"\xff\x00"), "not CBOR"),
        (_answer(cbor2.dumps([1, 2])), "a CBOR array"),
        (_answer(cbor2.dumps({1: "x"})), "a key that is not text"),
        (_answer(cbor2.dumps({"header": 1, "r": "hi"})), "a key smpclient takes as its own"),
        (_answer(cbor2.dumps({"r": "hi"}), group=1, command=1), "another group's answer"),
    ],
)
def test_an_answer_smpclient_cannot_parse_is_dropped_not_raised(broken: bytes, why: str) -> None:
    """Through smpclient: the broken answer is counted and skipped (the request would time out);
    the next answer is the one returned. Before, each raised out of ``client.request``."""
    good = _answer(cbor2.dumps({"r": "hi"}))

    async def main() -> object:
        node = _EchoNode([[broken, good]])
        transport = SharedLineTransport(node)
        node.transport = transport
        client = SMPClient(transport, "node", timeout_s=1.0)
        await transport.connect("node", 1.0)  # client.connect would ask for parameters first
        response = await client.request(EchoWrite(d="hi"))
        assert transport.broken_answers == 1, why
        return response

    assert getattr(asyncio.run(main()), "r", None) == "hi"


def test_a_body_of_the_wrong_fields_is_still_smpclients_validation_error() -> None:
    """A CBOR map of the wrong fields passes: smpclient reports it as its own error."""
    async def main() -> None:
        node = _EchoNode([[_answer(cbor2.dumps({"r": 5, "x": [1]}))]])
        transport = SharedLineTransport(node)
        node.transport = transport
        client = SMPClient(transport, "node", timeout_s=1.0)
        await transport.connect("node", 1.0)  # client.connect would ask for parameters first
        with pytest.raises(SMPValidationException):
            await client.request(EchoWrite(d="hi"))
        assert transport.broken_answers == 0

    asyncio.run(main())


def test_the_servers_buffer_size_reaches_the_transport_through_smpclients_initialize() -> None:
    """Pins smpclient: ``SMPClient.connect`` asks for the MCUmgr parameters and hands
    ``buf_size`` to ``SMPTransport.initialize``, which keeps it in
    ``_smp_server_transport_buffer_size``; the transport's ``mtu`` is read from there
    (smp_adapter.py's docstring)."""
    body = cbor2.dumps({"buf_size": 384, "buf_count": 4})
    read_rsp = bytes([0x09, 0]) + len(body).to_bytes(2, "big") + bytes([0, 0, 0, 6]) + body

    async def main() -> tuple[int, int]:
        node = _EchoNode([[read_rsp]])
        transport = SharedLineTransport(node)
        node.transport = transport
        before = transport.mtu
        await SmpSession(transport, "node-1", "node", 1.0).connect()
        return before, transport.mtu

    assert asyncio.run(main()) == (DEFAULT_MAX_MESSAGE + FRAME_OVERHEAD, 384)
