"""The request planner: which Modbus read requests cover a device's tags.

Reading 40 registers in one request is as fast as reading one, so tags that sit
next to each other (or within ``max_gap`` unused registers) share a request.
Pure logic, no I/O: the driver plans once at construction and reuses the plan
on every poll.

Rules:
- requests are per unit id and table (coil, discrete, holding, input) and never mix them;
- a request spans at most ``max_registers`` registers (holding, input) or
  ``max_bits`` bits (coil, discrete);
- a tag never straddles two requests: it lies whole inside exactly one;
- tags may overlap (two views of the same registers); overlapping tags share a
  request when it fits, otherwise registers are read twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from drivers.modbus.config import Table
from gateway.errors import PlanError

#: protocol limits: FC3/FC4 read at most 125 registers, FC1/FC2 at most 2000 bits
MAX_REGISTERS = 125
MAX_BITS = 2000
BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete"})
#: order of the planned requests, then by address
TABLE_ORDER: tuple[Table, ...] = ("coil", "discrete", "holding", "input")


@dataclass(frozen=True, slots=True)
class TagSpan:
    """Where one tag lives. ``index`` is the tag's position in the device's tag list."""

    index: int
    table: Table
    address: int
    count: int
    name: str = ""
    unit: int = 0

    @property
    def end(self) -> int:
        """One past the last register (or bit) of the tag."""
        return self.address + self.count

    def describe(self) -> str:
        return f"tag {self.name!r}" if self.name else f"tag #{self.index}"


@dataclass(frozen=True, slots=True)
class Member:
    """A tag inside a request: ``offset`` registers (or bits) from the request's start."""

    index: int
    offset: int


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read: ``count`` registers (or bits) of ``table`` from ``address`` of unit ``unit``."""

    table: Table
    address: int
    count: int
    members: tuple[Member, ...]
    unit: int = 0

    @property
    def is_bits(self) -> bool:
        return self.table in BIT_TABLES

    def describe(self) -> str:
        unit = "bit" if self.is_bits else "register"
        plural = "" if self.count == 1 else "s"
        last = self.address + self.count - 1
        return f"{self.table} {self.address}..{last} ({self.count} {unit}{plural})"


def plan_requests(
    spans: Iterable[TagSpan],
    *,
    max_registers: int = MAX_REGISTERS,
    max_bits: int = MAX_BITS,
    max_gap: int = 0,
) -> list[ReadRequest]:
    """Coalesce tags into as few read requests as the limits allow.

    Greedy from the lowest address: a tag joins the open request when the gap
    from the request's end is at most ``max_gap`` and the request stays within
    its size limit; otherwise it opens a new request. For intervals this greedy
    choice gives the fewest requests.

    Raises :class:`PlanError` for limits outside the protocol's range or for a
    tag larger than one request.
    """
    if not 1 <= max_registers <= MAX_REGISTERS:
        raise PlanError(f"max_request_registers must be 1..{MAX_REGISTERS}, not {max_registers}")
    if not 1 <= max_bits <= MAX_BITS:
        raise PlanError(f"max_request_bits must be 1..{MAX_BITS}, not {max_bits}")
    if max_gap < 0:
        raise PlanError(f"max_gap must not be negative, not {max_gap}")

    by_table: dict[tuple[int, str], list[TagSpan]] = {}
    for span in spans:
        if span.table not in TABLE_ORDER:
            raise PlanError(f"{span.describe()}: unknown table {span.table!r}")
        limit = max_bits if span.table in BIT_TABLES else max_registers
        if span.count < 1:
            raise PlanError(f"{span.describe()}: register count must be at least 1")
        if span.count > limit:
            what = "max_request_bits" if span.table in BIT_TABLES else "max_request_registers"
            raise PlanError(
                f"{span.describe()} needs {span.count} registers but {what} is {limit}: "
                "a tag must fit in one request"
            )
        if span.address < 0 or span.end > 65536:
            raise PlanError(f"{span.describe()}: address {span.address} is outside 0..65535")
        by_table.setdefault((span.unit, span.table), []).append(span)

    requests: list[ReadRequest] = []
    for unit in sorted({unit for unit, _ in by_table}):
        for table in TABLE_ORDER:
            table_spans = by_table.get((unit, table))
            if table_spans:
                limit = max_bits if table in BIT_TABLES else max_registers
                requests.extend(_plan_table(unit, table, table_spans, limit, max_gap))
    return requests


def _plan_table(
    unit: int, table: Table, spans: list[TagSpan], limit: int, max_gap: int
) -> list[ReadRequest]:
    # longest first at equal address, so an overlapping shorter tag never widens a request
    ordered = sorted(spans, key=lambda s: (s.address, -s.count, s.index))
    requests: list[ReadRequest] = []
    start = end = 0
    members: list[TagSpan] = []
    for span in ordered:
        if members and span.address - end <= max_gap and max(end, span.end) - start <= limit:
            members.append(span)
            end = max(end, span.end)
            continue
        if members:
            requests.append(_request(unit, table, start, end, members))
        members = [span]
        start, end = span.address, span.end
    if members:
        requests.append(_request(unit, table, start, end, members))
    return requests


def _request(unit: int, table: Table, start: int, end: int, spans: list[TagSpan]) -> ReadRequest:
    return ReadRequest(
        table=table,
        address=start,
        count=end - start,
        members=tuple(Member(s.index, s.address - start) for s in spans),
        unit=unit,
    )
