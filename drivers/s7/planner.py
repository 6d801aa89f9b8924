"""The S7 request planner: scattered tags -> the fewest read requests that fit the PDU.

Pure logic, no I/O. The driver plans again whenever the negotiated PDU size changes
(an S7-200 SMART or S7-1200 often gives 240 bytes, an S7-300 240 or 480, an S7-1500
960), so a plan is a function of the tags, the PDU size and the limits.

Two steps:

1. **Blocks.** Per area (and DB), tags whose bytes lie within ``max_gap`` bytes of each
   other are merged into one block: one item reads them all. A block never grows beyond
   what one answer can carry (:func:`~drivers.s7.frames.max_read_payload`); a tag that is
   larger by itself (a ``STRING[254]`` in a 240-byte PDU) is read in several chunks.
   Timers and counters merge by number (2 bytes each); they never share a block with bytes.
2. **Requests.** Items are packed into read requests. S7comm budgets each request twice:
   the request (10-byte header, function and count, 12 bytes per item) and the answer
   (12-byte header, function and count, per item a 4-byte header, the data and a fill
   byte after an odd length); both must fit the PDU, and a request carries at most
   ``max_items`` items (PLCs limit it; 20 is the common limit). This is bin packing in
   two dimensions: exact search for up to :data:`EXACT_ITEMS` items (a device's usual
   size), first-fit decreasing above that; either way never more requests than
   first-fit decreasing finds.

A tag lies whole inside one block, so its value comes from one read unless it alone is
larger than one answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from drivers.s7.address import Area
from drivers.s7.frames import (
    ITEM_SPEC,
    REPLY_OVERHEAD,
    REQUEST_OVERHEAD,
    ReadItem,
    max_read_payload,
    read_cost,
)
from gateway.errors import PlanError

__all__ = ["Block", "Chunk", "ReadPlan", "ReadRequest", "TagSpan", "plan_reads"]

#: the smallest PDU an S7 partner negotiates in practice (and that leaves room for an item)
MIN_PDU = 64
#: S7comm's item count is one byte
MAX_ITEMS = 255
#: up to this many items the packing is searched exactly
EXACT_ITEMS = 14
#: search steps before the exact packing settles for the best found
_SEARCH_BUDGET = 50_000


@dataclass(frozen=True, slots=True)
class TagSpan:
    """Where one tag lives: ``units`` bytes (timers, counters: numbers) from ``start``.
    ``index`` is the tag's position in the device's tag list."""

    index: int
    area: Area
    db: int
    start: int
    units: int
    name: str = ""

    @property
    def end(self) -> int:
        return self.start + self.units


@dataclass(frozen=True, slots=True)
class Block:
    """Bytes (or timers, counters) read as one range; ``members``: (tag index, byte offset)."""

    area: Area
    db: int
    start: int
    units: int
    members: tuple[tuple[int, int], ...]

    @property
    def byte_length(self) -> int:
        return self.units * 2 if self.area.per_element else self.units


@dataclass(frozen=True, slots=True)
class Chunk:
    """The part of block ``block`` that one read item brings: ``offset`` bytes into it."""

    block: int
    offset: int
    item: ReadItem


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read-var job: its chunks, in the order of the items on the wire."""

    chunks: tuple[Chunk, ...]

    @property
    def items(self) -> tuple[ReadItem, ...]:
        return tuple(c.item for c in self.chunks)

    def request_bytes(self) -> int:
        return REQUEST_OVERHEAD + ITEM_SPEC * len(self.chunks)

    def answer_bytes(self) -> int:
        """The answer's size, each odd item counted with a fill byte (the last has none on
        the wire: the budget keeps one byte to spare then)."""
        return REPLY_OVERHEAD + sum(read_cost(c.item.byte_length)[1] for c in self.chunks)

    def describe(self) -> str:
        return ", ".join(c.item.describe() for c in self.chunks)


@dataclass(frozen=True, slots=True)
class ReadPlan:
    blocks: tuple[Block, ...]
    requests: tuple[ReadRequest, ...]


def plan_reads(
    spans: Iterable[TagSpan], *, pdu_size: int, max_items: int = 20, max_gap: int = 8
) -> ReadPlan:
    """Blocks and requests covering ``spans`` within ``pdu_size`` (see the module's doc)."""
    if pdu_size < MIN_PDU:
        raise PlanError(f"PDU size {pdu_size} is below {MIN_PDU} bytes")
    if not 1 <= max_items <= MAX_ITEMS:
        raise PlanError(f"max_items must be 1..{MAX_ITEMS}, not {max_items}")
    if max_gap < 0:
        raise PlanError(f"max_gap must not be negative, not {max_gap}")
    # even, so a chunk of timers or counters ends on a whole one and no fill byte is needed
    capacity = max_read_payload(pdu_size) & ~1
    # a request must hold at least one item
    items_per_request = min(max_items, (pdu_size - REQUEST_OVERHEAD) // ITEM_SPEC)
    blocks = _blocks(list(spans), capacity, max_gap)
    chunks: list[Chunk] = []
    for number, block in enumerate(blocks):
        chunks.extend(_chunks(number, block, capacity))
    bins = _pack(chunks, pdu_size, items_per_request)
    requests = tuple(
        ReadRequest(tuple(sorted(b, key=lambda c: (c.block, c.offset)))) for b in bins)
    requests = tuple(sorted(requests, key=lambda r: (r.chunks[0].block, r.chunks[0].offset)))
    return ReadPlan(tuple(blocks), requests)


def _blocks(spans: list[TagSpan], capacity: int, max_gap: int) -> list[Block]:
    for span in spans:
        if span.units < 1 or span.start < 0:
            raise PlanError(f"tag {span.name or span.index}: empty or negative range")
    by_region: dict[tuple[int, int], list[TagSpan]] = {}
    for span in spans:
        by_region.setdefault((int(span.area), span.db), []).append(span)
    blocks: list[Block] = []
    for area_code, db in sorted(by_region):
        area = Area(area_code)
        unit_bytes = 2 if area.per_element else 1
        limit = capacity // unit_bytes
        gap = max_gap // unit_bytes
        ordered = sorted(by_region[(area_code, db)], key=lambda s: (s.start, -s.units, s.index))
        members: list[TagSpan] = []
        start = end = 0
        for span in ordered:
            fits = max(end, span.end) - start <= limit
            if members and span.start - end <= gap and fits:
                members.append(span)
                end = max(end, span.end)
                continue
            if members:
                blocks.append(_block(area, db, start, end, members, unit_bytes))
            members, start, end = [span], span.start, span.end
        if members:
            blocks.append(_block(area, db, start, end, members, unit_bytes))
    return blocks


def _block(area: Area, db: int, start: int, end: int, spans: Sequence[TagSpan],
           unit_bytes: int) -> Block:
    return Block(area, db, start, end - start,
                 tuple((s.index, (s.start - start) * unit_bytes) for s in spans))


def _chunks(number: int, block: Block, capacity: int) -> list[Chunk]:
    unit_bytes = 2 if block.area.per_element else 1
    step = capacity // unit_bytes
    out = []
    for first in range(0, block.units, step):
        count = min(step, block.units - first)
        item = ReadItem(block.area, block.db, block.start + first, count)
        out.append(Chunk(number, first * unit_bytes, item))
    return out


def _pack(chunks: list[Chunk], pdu_size: int, max_items: int) -> list[list[Chunk]]:
    """Chunks into the fewest bins within both budgets and the item limit."""
    answer_room = pdu_size - REPLY_OVERHEAD
    costs = [read_cost(c.item.byte_length)[1] for c in chunks]
    order = sorted(range(len(chunks)), key=lambda i: (-costs[i], i))
    # first-fit decreasing
    bins: list[list[int]] = []
    used: list[int] = []
    for i in order:
        for b, bin_ in enumerate(bins):
            if len(bin_) < max_items and used[b] + costs[i] <= answer_room:
                bin_.append(i)
                used[b] += costs[i]
                break
        else:
            bins.append([i])
            used.append(costs[i])
    lower = max(-(-sum(costs) // answer_room), -(-len(chunks) // max_items), 1 if chunks else 0)
    if len(bins) > lower and len(chunks) <= EXACT_ITEMS:
        better = _exact(order, costs, answer_room, max_items, len(bins), lower)
        if better is not None:
            bins = better
    return [[chunks[i] for i in bin_] for bin_ in bins]


def _exact(order: list[int], costs: list[int], room: int, max_items: int, best: int,
           lower: int) -> list[list[int]] | None:
    """A packing in fewer than ``best`` bins (branch and bound, largest first), or None."""
    found: list[list[int]] | None = None
    bins: list[list[int]] = []
    used: list[int] = []
    steps = 0

    def place(k: int) -> bool:
        nonlocal best, found, steps
        steps += 1
        if steps > _SEARCH_BUDGET:
            return True  # give up: keep what was found
        if k == len(order):
            if len(bins) < best:
                best = len(bins)
                found = [list(b) for b in bins]
            return best <= lower
        i = order[k]
        tried: set[tuple[int, int]] = set()
        for b in range(len(bins)):
            state = (used[b], len(bins[b]))
            if state in tried or len(bins[b]) >= max_items or used[b] + costs[i] > room:
                continue
            tried.add(state)  # two bins alike: trying one is enough
            bins[b].append(i)
            used[b] += costs[i]
            stop = place(k + 1)
            bins[b].pop()
            used[b] -= costs[i]
            if stop:
                return True
        if len(bins) + 1 < best:
            bins.append([i])
            used.append(costs[i])
            stop = place(k + 1)
            bins.pop()
            used.pop()
            if stop:
                return True
        return False

    place(0)
    return found
