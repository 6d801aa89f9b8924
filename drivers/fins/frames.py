"""FINS frames: commands, responses, end codes, and the FINS/TCP header with its node-address
handshake. Pure bytes in, bytes or values out; no I/O.

A FINS frame is a 10-byte header, a 2-byte command code and the command's text::

    ICF RSV GCT DNA DA1 DA2 SNA SA1 SA2 SID | MRC SRC | text ...

``ICF`` 0x80 is a command that wants a response (bit 6 set: a response); ``GCT`` the
gateway count (bridges the frame may cross); ``DNA/DA1/DA2`` the destination network,
node and unit (unit 0: the CPU unit), ``SNA/SA1/SA2`` the source's; ``SID`` a service id
the response echoes. A response swaps the addresses and puts a 2-byte **end code**
(``MRES SRES``) before its data. In the end code, bit 7 of MRES says a relay error on
the way, bits 6 and 7 of SRES say the CPU has a non-fatal or fatal error of its own: the
command itself succeeded when the rest is 00 00 (``0040``: done, but the PLC has e.g. a
battery error).

Over TCP each frame travels in a FINS/TCP message: ``"FINS"``, length (4 bytes, the
bytes after it), command (4), error code (4), payload. Command 0 (client -> PLC) asks
for a node address (0: assign one), command 1 (PLC -> client) answers with the client's
and the PLC's node addresses; command 2 carries a FINS frame; command 3 is the PLC's
error notification. Every number is big endian.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drivers.fins.address import AREA_BY_CODE
from gateway.errors import FinsFrameError

__all__ = [
    "CONTROLLER_DATA_READ",
    "HEADER_SIZE",
    "MAX_FRAME",
    "MEMORY_AREA_READ",
    "MEMORY_AREA_WRITE",
    "MULTIPLE_MEMORY_AREA_READ",
    "ControllerData",
    "EndCode",
    "Frame",
    "MultipleReadLayout",
    "Route",
    "TcpMessage",
    "command_frame",
    "controller_data_read",
    "memory_area_read",
    "memory_area_write",
    "multiple_memory_area_read",
    "node_address_request",
    "parse_controller_data",
    "parse_frame",
    "parse_multiple_read",
    "parse_node_address_response",
    "parse_tcp_header",
    "response_frame",
    "tcp_message",
]

HEADER_SIZE = 10
#: the largest FINS frame an Omron Ethernet port takes or sends (header, code, text)
MAX_FRAME = 2012

ICF_COMMAND = 0x80  # bridges allowed (bit 7), a command (bit 6 clear), response wanted
_ICF_RESPONSE = 0x40
_ICF_NO_RESPONSE = 0x01

MEMORY_AREA_READ = 0x0101
MEMORY_AREA_WRITE = 0x0102
MULTIPLE_MEMORY_AREA_READ = 0x0104
CONTROLLER_DATA_READ = 0x0501


@dataclass(frozen=True, slots=True)
class Route:
    """Who sends to whom: FINS network, node and unit addresses of both ends.

    Network 0 is the local network; unit 0 is the CPU unit; node 1..254 (0: the local
    node inside a PLC, 255: broadcast)."""

    dest_node: int
    src_node: int
    dest_network: int = 0
    dest_unit: int = 0
    src_network: int = 0
    src_unit: int = 0
    gateway_count: int = 2

    def __post_init__(self) -> None:
        for name in ("dest_node", "src_node", "dest_network", "dest_unit", "src_network",
                     "src_unit", "gateway_count"):
            value = getattr(self, name)
            if not 0 <= value <= 255:
                raise ValueError(f"{name} {value} is outside 0..255")

    def header(self, sid: int) -> bytes:
        return bytes((ICF_COMMAND, 0, self.gateway_count, self.dest_network, self.dest_node,
                      self.dest_unit, self.src_network, self.src_node, self.src_unit, sid & 0xFF))

    def describe(self) -> str:
        return (f"network {self.dest_network} node {self.dest_node} unit {self.dest_unit} "
                f"from node {self.src_node}")


@dataclass(frozen=True, slots=True)
class Frame:
    """A FINS frame read from bytes. ``end_code`` is None for a command."""

    icf: int
    gct: int
    dna: int
    da1: int
    da2: int
    sna: int
    sa1: int
    sa2: int
    sid: int
    code: int
    end_code: int | None
    text: bytes

    @property
    def is_response(self) -> bool:
        return self.end_code is not None

    def answers(self, route: Route, sid: int, code: int) -> bool:
        """This response is the one to the command ``code`` with ``sid`` sent on ``route``
        (it comes from its destination, to its source)."""
        return (self.is_response and self.sid == sid & 0xFF and self.code == code
                and (self.sna, self.sa1, self.sa2) == (route.dest_network, route.dest_node,
                                                       route.dest_unit)
                and (self.dna, self.da1, self.da2) == (route.src_network, route.src_node,
                                                       route.src_unit))


def command_frame(route: Route, sid: int, code: int, text: bytes = b"") -> bytes:
    """A command frame: header, command code, text."""
    return route.header(sid) + code.to_bytes(2, "big") + text


def response_frame(command: Frame, end_code: int, text: bytes = b"") -> bytes:
    """The response to ``command`` (the simulator's side): addresses swapped, its SID."""
    header = bytes((0xC0 | (command.icf & 0x01), 0, command.gct, command.sna, command.sa1,
                    command.sa2, command.dna, command.da1, command.da2, command.sid))
    return header + command.code.to_bytes(2, "big") + end_code.to_bytes(2, "big") + text


def parse_frame(data: bytes) -> Frame:
    """A command or response frame; :class:`FinsFrameError` (``garbled``) when it is none."""
    if len(data) < HEADER_SIZE + 2:
        raise FinsFrameError("garbled", f"a FINS frame of {len(data)} bytes is shorter than "
                             "its 12-byte header and command code")
    if len(data) > MAX_FRAME:
        raise FinsFrameError("garbled", f"a FINS frame of {len(data)} bytes is longer than "
                             f"the {MAX_FRAME} bytes FINS allows")
    icf = data[0]
    if not icf & 0x80 or icf & 0x3E:
        raise FinsFrameError("garbled", f"ICF 0x{icf:02X} is not a FINS frame's (0x80, 0x81, "
                             "0xC0 or 0xC1)")
    code = int.from_bytes(data[10:12], "big")
    if icf & _ICF_RESPONSE:
        if len(data) < HEADER_SIZE + 4:
            raise FinsFrameError("garbled", f"a FINS response of {len(data)} bytes has no "
                                 "end code")
        end_code: int | None = int.from_bytes(data[12:14], "big")
        text = bytes(data[14:])
    else:
        end_code = None
        text = bytes(data[12:])
    return Frame(icf, data[2], data[3], data[4], data[5], data[6], data[7], data[8], data[9],
                 code, end_code, text)


# -- end codes ------------------------------------------------------------------------------

# fmt: off
#: (MRES, SRES) without the flag bits -> what it means (FINS reference W342, section 5)
END_CODES: dict[int, str] = {
    0x0000: "normal completion",
    0x0001: "service cancelled",
    0x0101: "local node not in the network",
    0x0102: "token timeout",
    0x0103: "retries failed",
    0x0104: "too many send frames",
    0x0105: "node address range error",
    0x0106: "node address duplication",
    0x0201: "destination node not in the network",
    0x0202: "unit missing: no unit with that unit address",
    0x0203: "third node missing",
    0x0204: "destination node busy",
    0x0205: "response timeout",
    0x0301: "communications controller error",
    0x0302: "CPU unit error",
    0x0303: "controller error",
    0x0304: "unit number error",
    0x0401: "undefined command",
    0x0402: "not supported by this model or version",
    0x0501: "destination address setting error",
    0x0502: "no routing tables",
    0x0503: "routing table error",
    0x0504: "too many relays",
    0x1001: "command too long",
    0x1002: "command too short",
    0x1003: "number of elements does not match the data",
    0x1004: "command format error",
    0x1005: "header error",
    0x1101: "area classification missing: this CPU has no such memory area",
    0x1102: "access size error",
    0x1103: "address range error: the address is beyond this CPU's memory",
    0x1104: "address range exceeded: the read or write runs past the end of the area",
    0x1106: "program missing",
    0x1109: "relational error",
    0x110A: "duplicate data access",
    0x110B: "response too long",
    0x110C: "parameter error",
    0x2002: "protected: the program is write-protected",
    0x2003: "table missing",
    0x2004: "data missing",
    0x2005: "program missing",
    0x2006: "file missing",
    0x2007: "data mismatch",
    0x2101: "read-only: the area cannot be written",
    0x2102: "protected: cannot write the data link table",
    0x2103: "cannot register",
    0x2105: "program missing",
    0x2106: "file missing",
    0x2107: "file name already exists",
    0x2108: "cannot change",
    0x2201: "not possible during execution",
    0x2202: "not possible while running",
    0x2203: "wrong PLC mode: in PROGRAM mode",
    0x2204: "wrong PLC mode: in DEBUG mode",
    0x2205: "wrong PLC mode: in MONITOR mode",
    0x2206: "wrong PLC mode: in RUN mode",
    0x2207: "the node is not a polling node",
    0x2208: "step cannot be executed",
    0x2301: "file device missing",
    0x2302: "memory missing",
    0x2303: "clock missing",
    0x2401: "table missing",
    0x2502: "memory error",
    0x2503: "I/O setting error",
    0x2504: "too many I/O points",
    0x2505: "CPU bus error",
    0x2506: "I/O duplication",
    0x2507: "I/O bus error",
    0x2509: "SYSMAC BUS/2 error",
    0x250A: "CPU bus unit error",
    0x250D: "SYSMAC BUS number duplication",
    0x250F: "memory error",
    0x2510: "SYSMAC BUS terminator missing",
    0x2601: "no protection",
    0x2602: "incorrect password",
    0x2604: "protected",
    0x2605: "service already executing",
    0x2606: "service stopped",
    0x2607: "no execution right",
    0x2608: "settings not complete",
    0x2609: "necessary items not set",
    0x260A: "number already defined",
    0x260B: "error will not clear",
    0x3001: "no access right",
    0x4001: "service aborted",
}
#: main codes -> their class, for sub codes the table above does not know
END_CODE_CLASSES: dict[int, str] = {
    0x00: "normal completion", 0x01: "local node error", 0x02: "destination node error",
    0x03: "controller error", 0x04: "service unsupported", 0x05: "routing table error",
    0x10: "command format error", 0x11: "parameter error", 0x20: "read not possible",
    0x21: "write not possible", 0x22: "not executable in the current mode",
    0x23: "no such device", 0x24: "cannot start or stop", 0x25: "unit error",
    0x26: "command error", 0x30: "access right error", 0x40: "abort",
}
# fmt: on


@dataclass(frozen=True, slots=True)
class EndCode:
    """The end code of a response: the code itself and the three flags around it."""

    raw: int

    @property
    def code(self) -> int:
        """MRES and SRES without the flags: 0x1103."""
        return self.raw & 0x7F3F

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def relay_error(self) -> bool:
        return bool(self.raw & 0x8000)

    @property
    def cpu_fatal(self) -> bool:
        return bool(self.raw & 0x0080)

    @property
    def cpu_non_fatal(self) -> bool:
        return bool(self.raw & 0x0040)

    @property
    def meaning(self) -> str:
        known = END_CODES.get(self.code)
        if known is not None:
            return known
        main = self.code >> 8
        return END_CODE_CLASSES.get(main, "a code FINS does not define") + (
            " (sub code not defined)" if main in END_CODE_CLASSES else "")

    def describe(self) -> str:
        """``end code 11 03 (address range error: ...)`` with the flags in words."""
        text = f"end code {self.code >> 8:02X} {self.code & 0xFF:02X} ({self.meaning})"
        flags = [word for flag, word in ((self.relay_error, "a relay error on the way"),
                                         (self.cpu_fatal, "the PLC has a fatal error"),
                                         (self.cpu_non_fatal, "the PLC has a non-fatal error"))
                 if flag]
        return text + ("; " + ", ".join(flags) if flags else "")


# -- command texts ---------------------------------------------------------------------------


def _area_address(code: int, word: int, bit: int) -> bytes:
    if not 0 <= code <= 0xFF or not 0 <= word <= 0xFFFF or not 0 <= bit <= 15:
        raise ValueError(f"area 0x{code:X} word {word} bit {bit} is not a FINS address")
    return bytes((code,)) + word.to_bytes(2, "big") + bytes((bit,))


def memory_area_read(code: int, word: int, bit: int, count: int) -> bytes:
    """Text of MEMORY AREA READ (01 01): ``count`` words (or bits) from ``word.bit``."""
    if not 1 <= count <= 0xFFFF:
        raise ValueError(f"cannot read {count} items")
    return _area_address(code, word, bit) + count.to_bytes(2, "big")


def memory_area_write(code: int, word: int, bit: int, count: int, data: bytes) -> bytes:
    """Text of MEMORY AREA WRITE (01 02): ``data`` is 2 bytes per word or 1 per bit."""
    size = 1 if AREA_BY_CODE.get(code, (None, False))[1] else 2
    if not 1 <= count <= 0xFFFF or len(data) != count * size:
        raise ValueError(f"{len(data)} bytes are not {count} items of {size} bytes")
    return _area_address(code, word, bit) + count.to_bytes(2, "big") + data


def multiple_memory_area_read(items: Sequence[tuple[int, int, int]]) -> bytes:
    """Text of MULTIPLE MEMORY AREA READ (01 04): one word or bit per (code, word, bit)."""
    if not items:
        raise ValueError("a multiple memory area read needs at least one item")
    return b"".join(_area_address(code, word, bit) for code, word, bit in items)


def controller_data_read() -> bytes:
    """Text of CONTROLLER DATA READ (05 01): empty, every part of the data."""
    return b""


# -- response texts --------------------------------------------------------------------------


#: one word item of a multiple read's answer: its area code, then the word (big endian)
_CODE_AND_WORD = np.dtype([("code", "u1"), ("word", ">u2")])


#: a byte -> 1 when it is not 0 (``bytes.translate``)
_ONE_IF_SET = bytes([0] + [1] * 255)


class MultipleReadLayout:
    """Where each item's area code and value lie in the answer to one MULTIPLE MEMORY AREA
    READ (01 04): each item is its area code and 2 bytes (a word) or 1 byte (a bit, 0 or
    1). Built once per planned read; :meth:`values` then checks and decodes an answer with
    a few NumPy operations whatever the number of items."""

    __slots__ = ("_code_at", "_code_bytes", "_codes", "_high", "_low", "_same", "codes", "size")

    def __init__(self, codes: Sequence[int]) -> None:
        self.codes = tuple(codes)
        code_at, high, low = [], [], []
        pos = 0
        for code in self.codes:
            is_bit = AREA_BY_CODE.get(code, (None, False))[1]
            code_at.append(pos)
            if is_bit:
                high.append(-1)  # no high byte: index of a zero appended to the answer
                low.append(pos + 1)
                pos += 2
            else:
                high.append(pos + 1)
                low.append(pos + 2)
                pos += 3
        #: bytes of a whole answer
        self.size = pos
        #: every item a bit (2 bytes each) or every item a word (3 bytes each): the answer is
        #: then taken by slices of its bytes (0: mixed, by gathers)
        sizes = {2 if AREA_BY_CODE.get(code, (None, False))[1] else 3 for code in self.codes}
        self._same = sizes.pop() if len(sizes) == 1 else 0
        self._code_bytes = bytes(self.codes)
        self._codes = np.array(self.codes, dtype=np.uint8)
        self._code_at = np.array(code_at, dtype=np.intp)
        self._high = np.array(high, dtype=np.intp)
        self._low = np.array(low, dtype=np.intp)

    def values(self, text: bytes) -> npt.NDArray[np.uint16]:
        """One value per item (words, bits as 0/1); :class:`FinsFrameError` (``decode``) when
        the text does not have that shape."""
        if len(text) != self.size:
            self._explain(text)
        if self._same:  # one kind of item: its area codes and values are slices
            step = self._same
            if text[::step] != self._code_bytes:
                self._explain(text)
            if step == 2:
                return np.frombuffer(text[1::2], dtype=np.uint8).astype(np.uint16)
            return np.frombuffer(text, dtype=_CODE_AND_WORD)["word"].astype(np.uint16)
        data = np.frombuffer(text + b"\0", dtype=np.uint8)  # the zero: a bit's high byte
        if not np.array_equal(data[self._code_at], self._codes):
            self._explain(text)
        words = data[self._high].astype(np.uint16)
        words <<= 8
        words |= data[self._low]
        return words

    def bits(self, frame: bytes, start: int = 14) -> bytes | None:
        """The values of a multiple read of bits only, from its answer ``frame`` (its text
        from ``start``): one byte a bit, 1 where it is set (the bytes' ``!= 0``) by byte
        slices, without NumPy; None for a read with word items or an answer that does not
        have the shape (:meth:`values` says why)."""
        if (self._same != 2 or len(frame) - start != self.size
                or frame[start::2] != self._code_bytes):
            return None
        return frame[start + 1::2].translate(_ONE_IF_SET)

    def _explain(self, text: bytes) -> None:
        """Raise the reason an answer does not fit, item by item."""
        pos = 0
        for i, code in enumerate(self.codes):
            size = 2 if AREA_BY_CODE.get(code, (None, False))[1] else 3
            if pos + size > len(text):
                raise FinsFrameError("decode", f"the answer to a multiple read ends after {i} "
                                     f"of its {len(self.codes)} items")
            if text[pos] != code:
                raise FinsFrameError("decode", f"item {i + 1} of a multiple read came with area "
                                     f"code 0x{text[pos]:02X}, 0x{code:02X} was asked")
            pos += size
        raise FinsFrameError("decode", f"the answer to a multiple read of {len(self.codes)} "
                             f"items has {len(text) - pos} bytes too many")


def parse_multiple_read(text: bytes, codes: Sequence[int]) -> list[int]:
    """The values of a MULTIPLE MEMORY AREA READ response, one per item asked (see
    :class:`MultipleReadLayout`)."""
    if not codes:
        if text:
            raise FinsFrameError("decode", f"the answer to a multiple read of 0 items has "
                                 f"{len(text)} bytes too many")
        return []
    return [int(v) for v in MultipleReadLayout(codes).values(text)]


@dataclass(frozen=True, slots=True)
class ControllerData:
    """What CONTROLLER DATA READ (05 01) says of the CPU."""

    model: str
    version: str
    dm_words: int | None = None
    em_banks: int | None = None

    def describe(self) -> str:
        text = self.model or "an unnamed controller"
        if self.version:
            text += f", version {self.version}"
        if self.dm_words is not None:
            text += f", {self.dm_words} DM words"
        if self.em_banks:
            text += f", {self.em_banks} EM bank{'s' if self.em_banks != 1 else ''}"
        return text


def _ascii(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode("ascii", errors="replace").strip()


def parse_controller_data(text: bytes) -> ControllerData:
    """The model (20 bytes of ASCII), the version (20 bytes) and, when present, the area
    data (DM words, EM banks) of a CONTROLLER DATA READ response."""
    if len(text) < 20:
        raise FinsFrameError("decode", f"controller data of {len(text)} bytes has no model "
                             "name (20 bytes)")
    model, version = _ascii(text[:20]), _ascii(text[20:40])
    if len(text) >= 87:  # area data after 40 bytes for system use
        return ControllerData(model, version, int.from_bytes(text[83:85], "big"), text[86])
    return ControllerData(model, version)


# -- FINS/TCP ---------------------------------------------------------------------------------

TCP_MAGIC = b"FINS"
TCP_HEADER_SIZE = 16
TCP_NODE_ADDRESS_REQUEST = 0
TCP_NODE_ADDRESS_RESPONSE = 1
TCP_FRAME = 2
TCP_FRAME_ERROR = 3
#: the largest length field accepted: a FINS frame plus command and error code
TCP_MAX_LENGTH = 8 + MAX_FRAME

# fmt: off
#: FINS/TCP error codes (the header's error field) -> what it means
TCP_ERRORS: dict[int, str] = {
    0x00: "normal",
    0x01: "the header is not 'FINS'",
    0x02: "the data length is too long",
    0x03: "the command is not supported",
    0x20: "all connections are in use",
    0x21: "the node asked for is already connected",
    0x22: "the node asked for is protected: this IP address may not use it",
    0x23: "the client node address asked for is out of range",
    0x24: "the client asked for the PLC's own node address",
    0x25: "all node addresses the PLC assigns are in use",
}
# fmt: on


@dataclass(frozen=True, slots=True)
class TcpMessage:
    """A FINS/TCP header: ``length`` counts the bytes after the length field."""

    length: int
    command: int
    error: int

    @property
    def payload_size(self) -> int:
        return self.length - 8

    def describe_error(self) -> str:
        return TCP_ERRORS.get(self.error, f"error code 0x{self.error:08X}")


def tcp_message(command: int, payload: bytes = b"", error: int = 0) -> bytes:
    """A FINS/TCP message carrying ``payload``."""
    return (TCP_MAGIC + (8 + len(payload)).to_bytes(4, "big") + command.to_bytes(4, "big")
            + error.to_bytes(4, "big") + payload)


def parse_tcp_header(data: bytes) -> TcpMessage:
    """The 16-byte FINS/TCP header; :class:`FinsFrameError` (``garbled``) for anything else:
    the stream is out of step."""
    if len(data) != TCP_HEADER_SIZE:
        raise ValueError(f"a FINS/TCP header is {TCP_HEADER_SIZE} bytes, not {len(data)}")
    if data[:4] != TCP_MAGIC:
        raise FinsFrameError("garbled", f"a FINS/TCP message starts with 'FINS', not "
                             f"{bytes(data[:4])!r}")
    length = int.from_bytes(data[4:8], "big")
    if not 8 <= length <= TCP_MAX_LENGTH:
        raise FinsFrameError("garbled", f"a FINS/TCP length of {length} is outside "
                             f"8..{TCP_MAX_LENGTH}")
    return TcpMessage(length, int.from_bytes(data[8:12], "big"),
                      int.from_bytes(data[12:16], "big"))


def node_address_request(client_node: int = 0) -> bytes:
    """The client's handshake: ask for ``client_node`` (0: let the PLC assign one)."""
    if not 0 <= client_node <= 254:
        raise ValueError(f"client node {client_node} is outside 0..254")
    return tcp_message(TCP_NODE_ADDRESS_REQUEST, client_node.to_bytes(4, "big"))


def parse_node_address_response(payload: bytes) -> tuple[int, int]:
    """(client node, PLC node) from the PLC's handshake answer."""
    if len(payload) != 8:
        raise FinsFrameError("garbled", f"a node address answer carries 8 bytes, not "
                             f"{len(payload)}")
    client, server = int.from_bytes(payload[:4], "big"), int.from_bytes(payload[4:], "big")
    if not (1 <= client <= 254 and 1 <= server <= 254):
        raise FinsFrameError("garbled", f"node addresses {client} (client) and {server} (PLC) "
                             "are not both within 1..254")
    return client, server
