"""S7comm read-var and write-var PDUs, built and checked byte by byte (pure, no I/O).

python-snap7 carries these PDUs over ISO-on-TCP (TPKT, COTP) and negotiates the PDU
size; the gateway builds the PDUs itself because snap7 3.3's ``AsyncClient`` reads
several variables with one request per variable, and its multi-variable reader (sync
``Client`` only) reads bytes alone and fails a whole request when one item fails. Here
one request carries every item the planner put in it, bits are written as bits, timers
and counters are read as such, and each item of an answer has its own return code, so
one missing DB makes only its own tags BAD.

A job (request) has a 10-byte header, an acknowledgement with data a 12-byte one (with
the error class and code); then the parameter (function, item count, items) and the
data. See :data:`REQUEST_OVERHEAD` and friends for the sizes the planner budgets.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.s7.address import Area
from gateway.errors import S7FrameError, S7JobRefused

__all__ = [
    "ItemFailed",
    "ReadAnswerShape",
    "ReadItem",
    "job_refused",
    "parse_read_response",
    "parse_write_response",
    "read_request",
    "write_request",
]

PROTOCOL_ID = 0x32
JOB, ACK, ACK_DATA, USERDATA = 0x01, 0x02, 0x03, 0x07
READ_VAR, WRITE_VAR = 0x04, 0x05
#: transport sizes of an address (what the count counts)
TS_BIT, TS_BYTE, TS_COUNTER, TS_TIMER = 0x01, 0x02, 0x1C, 0x1D
#: transport sizes of data items: the length is in bits for these, in bytes otherwise
_LENGTH_IN_BITS = frozenset({0x03, 0x04, 0x05})
DATA_BIT, DATA_BYTE, DATA_OCTETS = 0x03, 0x04, 0x09
SUCCESS = 0xFF

#: request header + function + item count; then 12 bytes per item
REQUEST_OVERHEAD = 10 + 2
ITEM_SPEC = 12
#: answer header (with error class and code) + function + item count
REPLY_OVERHEAD = 12 + 2
#: return code, transport size, length before each item's data (then a fill byte after an
#: odd length unless it is the last item)
ITEM_HEADER = 4

#: item return codes as the S7 documentation names them
RETURN_CODES = {
    0x01: "hardware fault",
    0x03: "access to the object not allowed",
    0x05: "address out of range",
    0x06: "data type not supported",
    0x07: "data type inconsistent",
    0x0A: "object does not exist",
}
#: header error class/code of a refused job
HEADER_ERRORS = {
    0x8104: "the service is not available on the module: on an S7-1200/1500, 'Permit access "
            "with PUT/GET communication from remote partner' is off",
    0x8500: "wrong frames (the PLC could not read the request)",
    0x8304: "the PLC has no resources for more jobs",
    0x8702: "the service is not supported by the module",
    0x8703: "access to the object refused",
    0xD602: "access refused by the PLC's protection level (password)",
}


def job_refused(error_class: int, error_code: int) -> S7JobRefused:
    """The error for a job the PLC refused as a whole, in words."""
    code = error_class << 8 | error_code
    meaning = HEADER_ERRORS.get(code, "an error the gateway has no words for")
    return S7JobRefused(code, f"the PLC refused the request with error 0x{code:04X} ({meaning})")


@dataclass(frozen=True, slots=True)
class ItemFailed:
    """One item of an answer came back with a return code other than success."""

    code: int

    @property
    def reason(self) -> str:
        return RETURN_CODES.get(self.code, "an unknown return code")


@dataclass(frozen=True, slots=True)
class ReadItem:
    """One item of a read or write: ``count`` bytes from byte ``start`` of an area (or
    ``count`` timers or counters from number ``start``); ``bit`` for a single-bit write."""

    area: Area
    db: int
    start: int
    count: int
    bit: int | None = None

    @property
    def transport(self) -> int:
        if self.bit is not None:
            return TS_BIT
        return {Area.T: TS_TIMER, Area.C: TS_COUNTER}.get(self.area, TS_BYTE)

    @property
    def byte_length(self) -> int:
        """Bytes of data the item carries."""
        return self.count * 2 if self.area.per_element else self.count

    def spec(self) -> bytes:
        address = self.start if self.area.per_element else self.start * 8 + (self.bit or 0)
        db = self.db if self.area is Area.DB else 0
        return struct.pack(">BBBBHHB", 0x12, 0x0A, 0x10, self.transport, self.count, db,
                           int(self.area)) + address.to_bytes(3, "big")

    def describe(self) -> str:
        if self.area.per_element:
            last = self.start + self.count - 1
            return f"{self.area.name}{self.start}" + (f"..{last}" if self.count > 1 else "")
        where = f"DB{self.db}" if self.area is Area.DB else self.area.name
        if self.bit is not None:
            return f"{where} bit {self.start}.{self.bit}"
        plural = "s" if self.count != 1 else ""
        last = self.start + self.count - 1
        return f"{where} bytes {self.start}..{last} ({self.count} byte{plural})"


def _header(pdu_ref: int, param: bytes, data: bytes) -> bytes:
    return struct.pack(">BBHHHH", PROTOCOL_ID, JOB, 0, pdu_ref & 0xFFFF, len(param), len(data))


def read_request(pdu_ref: int, items: Sequence[ReadItem]) -> bytes:
    """A read-var job for ``items`` (1..255 of them)."""
    return read_job(pdu_ref, read_param(items))


def read_param(items: Sequence[ReadItem]) -> bytes:
    """The parameter of a read-var job for ``items``: built once per plan, sent every poll."""
    if not 1 <= len(items) <= 255:
        raise ValueError(f"a read request carries 1 to 255 items, not {len(items)}")
    return bytes([READ_VAR, len(items)]) + b"".join(item.spec() for item in items)


def read_job(pdu_ref: int, param: bytes) -> bytes:
    """A read-var job of reference ``pdu_ref`` with a parameter from :func:`read_param`."""
    return _header(pdu_ref, param, b"") + param


def write_request(pdu_ref: int, item: ReadItem, data: bytes) -> bytes:
    """A write-var job of one item: ``data`` is its bytes (a bit: one byte, 0 or 1)."""
    if item.bit is not None:
        if len(data) != 1 or item.count != 1:
            raise ValueError("a bit write carries one item of one byte")
        transport, length = DATA_BIT, 1
    elif item.area.per_element:
        transport, length = DATA_OCTETS, len(data)
    else:
        transport, length = DATA_BYTE, len(data) * 8
    if len(data) != item.byte_length:
        raise ValueError(f"{item.describe()}: {len(data)} bytes given")
    param = bytes([WRITE_VAR, 1]) + item.spec()
    body = struct.pack(">BBH", 0, transport, length) + data
    return _header(pdu_ref, param, body) + param + body


def _answer(pdu: bytes, pdu_ref: int, function: int) -> tuple[int, bytes, bytes]:
    """Item count, parameter and data of an answer to job ``pdu_ref``; checks the header."""
    if len(pdu) < 12:
        raise S7FrameError(f"answer of {len(pdu)} bytes is shorter than an S7 header")
    proto, kind, _, ref, param_len, data_len, err_class, err_code = struct.unpack(
        ">BBHHHHBB", pdu[:12])
    if proto != PROTOCOL_ID:
        raise S7FrameError(f"answer does not start with the S7 protocol id 0x32 (0x{proto:02X})")
    if kind not in (ACK, ACK_DATA):
        raise S7FrameError(f"answer has PDU type {kind}, not an acknowledgement")
    if ref != pdu_ref & 0xFFFF:
        raise S7FrameError(f"answer to request {ref}, expected {pdu_ref & 0xFFFF}")
    if err_class or err_code:
        raise job_refused(err_class, err_code)
    if 12 + param_len + data_len != len(pdu):
        raise S7FrameError(f"answer of {len(pdu)} bytes announces {12 + param_len + data_len}")
    param = pdu[12:12 + param_len]
    if len(param) < 2 or param[0] != function:
        raise S7FrameError(f"answer's parameter is not function 0x{function:02X}")
    return param[1], param, pdu[12 + param_len:]


def parse_read_response(
    pdu: bytes, pdu_ref: int, items: Sequence[ReadItem]
) -> list[bytes | ItemFailed]:
    """Each item's data, or :class:`ItemFailed` with its return code.

    Raises :class:`S7JobRefused` for a job refused as a whole, :class:`S7FrameError` for an
    answer that does not fit the request (wrong reference, count, lengths)."""
    return parse_read_items(pdu, pdu_ref, [item.byte_length for item in items], items)


def parse_read_items(
    pdu: bytes, pdu_ref: int, sizes: Sequence[int], items: Sequence[ReadItem]
) -> list[bytes | ItemFailed]:
    """:func:`parse_read_response` with each item's byte length computed once (the driver
    keeps them with its plan)."""
    count, _, data = _answer(pdu, pdu_ref, READ_VAR)
    n = len(sizes)
    if count != n:
        raise S7FrameError(f"answer carries {count} items for {n} asked")
    out: list[bytes | ItemFailed] = []
    pos = 0
    end = len(data)
    last = n - 1
    for i, want in enumerate(sizes):
        if pos + ITEM_HEADER > end:
            if pos < end and data[pos] != SUCCESS:  # an error item cut to its code
                out.append(ItemFailed(data[pos]))
                pos += 1
                continue
            raise S7FrameError(f"answer ends before item {i + 1} of {n}")
        code, transport = data[pos], data[pos + 1]
        length = data[pos + 2] << 8 | data[pos + 3]
        pos += ITEM_HEADER
        size = (length + 7) >> 3 if transport in _LENGTH_IN_BITS else length
        if code != SUCCESS:
            out.append(ItemFailed(code))
            pos += size + (size & 1 if i < last else 0)
            continue
        if size != want:
            raise S7FrameError(f"item {i + 1} ({items[i].describe()}) came with {size} bytes")
        if pos + size > end:
            raise S7FrameError(f"item {i + 1} ({items[i].describe()}) is cut short")
        out.append(data[pos:pos + size])
        pos += size + (size & 1 if i < last else 0)
    if pos != end:
        raise S7FrameError(f"answer has {end - pos} bytes after its last item")
    return out


class ReadAnswerShape:
    """The layout of a whole answer to one read-var job in which every item came, taken
    from an answer :func:`parse_read_items` accepted. A later answer of the same size whose
    every byte but the items' data, their fill bytes and the reference is the same (header,
    parameter, each item's return code, transport size and length) is the same answer
    shape: :meth:`matches` says so with one masked comparison of the whole PDU, and
    :attr:`spans` says where each item's data lies, so the full parse runs only for answers
    of another shape (an item refused, an error, garbage)."""

    __slots__ = ("_expected", "_mask", "_ref_shift", "size", "spans")

    def __init__(self, pdu: bytes, spans: Sequence[tuple[int, int]]) -> None:
        self.size = len(pdu)
        self.spans = tuple(spans)
        checked = bytearray(b"\xff" * self.size)
        for i, (start, end) in enumerate(self.spans):
            fill = self.spans[i + 1][0] - ITEM_HEADER if i + 1 < len(self.spans) else end
            checked[start:fill] = bytes(fill - start)  # the data and its fill byte
        self._mask = int.from_bytes(checked, "big")
        checked[4:6] = b"\0\0"  # the reference: the caller's, per job
        self._expected = int.from_bytes(pdu, "big") & int.from_bytes(checked, "big")
        self._ref_shift = 8 * (self.size - 6)

    @classmethod
    def of(cls, pdu: bytes, sizes: Sequence[int]) -> ReadAnswerShape:
        """The shape of ``pdu``, an answer :func:`parse_read_items` accepted with every item
        a success (each of ``sizes`` bytes)."""
        _, param, _ = _answer(pdu, int.from_bytes(pdu[4:6], "big"), READ_VAR)
        pos = 12 + len(param)
        spans = []
        last = len(sizes) - 1
        for i, size in enumerate(sizes):
            pos += ITEM_HEADER
            spans.append((pos, pos + size))
            pos += size + (size & 1 if i < last else 0)
        return cls(pdu, spans)

    def matches(self, pdu: bytes, pdu_ref: int) -> bool:
        """``pdu`` is an answer of this shape to job ``pdu_ref`` (every item came)."""
        return len(pdu) == self.size and int.from_bytes(pdu, "big") & self._mask == (
            self._expected | (pdu_ref & 0xFFFF) << self._ref_shift)


def parse_write_response(pdu: bytes, pdu_ref: int, count: int = 1) -> list[int]:
    """The return code of each written item (0xFF: written)."""
    n, _, data = _answer(pdu, pdu_ref, WRITE_VAR)
    if n != count or len(data) != count:
        raise S7FrameError(f"write answer carries {n} items ({len(data)} codes) for {count}")
    return list(data)


def read_cost(byte_length: int) -> tuple[int, int]:
    """What one read item of ``byte_length`` bytes costs: (request bytes, answer bytes),
    the answer counted with its fill byte (an odd item that is not last has one)."""
    return ITEM_SPEC, ITEM_HEADER + byte_length + byte_length % 2


def max_write_payload(pdu_size: int) -> int:
    """The most data bytes one write item can carry in a PDU of ``pdu_size``."""
    return pdu_size - REQUEST_OVERHEAD - ITEM_SPEC - ITEM_HEADER


def max_read_payload(pdu_size: int) -> int:
    """The most data bytes one read item can bring back in a PDU of ``pdu_size``."""
    return pdu_size - REPLY_OVERHEAD - ITEM_HEADER
