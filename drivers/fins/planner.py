"""The request planner: which FINS reads cover a device's tags.

Pure logic, no I/O: the driver plans once per poll group and reuses the plan.

1. Word tags of one memory area that lie within ``max_gap`` words of each other join
   one **word run**, at most ``max_words`` long (a MEMORY AREA READ, 01 01, of up to
   999 words). A tag never straddles two runs.
2. A bool tag whose word a word run reads anyway is taken from that word (no request
   of its own). The other bool tags are read with **bit access**: bits within
   ``max_gap`` bits of each other (``CIO100.15`` and ``CIO101.00`` are neighbours)
   join a **bit run**, one MEMORY AREA READ of the area's bit code.
3. With ``multiple_items`` set, the smallest runs move into MULTIPLE MEMORY AREA READs
   (01 04: up to 167 scattered words and bits in one request), as many as lower the
   number of requests: ``n`` runs of which the ``k`` smallest move cost
   ``(n - k) + bins(k)`` requests, and the ``k`` with the fewest wins (ties: fewer moved).
   A run moves whole, so a value's words always arrive in one answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from drivers.fins.address import Area
from drivers.fins.config import MAX_MULTIPLE_ITEMS, MAX_READ_WORDS
from gateway.errors import PlanError

__all__ = ["Member", "ReadRequest", "TagSpan", "plan_requests"]


@dataclass(frozen=True, slots=True)
class TagSpan:
    """Where one tag lives. ``index`` is the tag's position in the device's tag list;
    ``bit`` is set for a bool tag (one bit of word ``word``)."""

    index: int
    area: Area
    word: int
    words: int = 1
    bit: int | None = None
    name: str = ""

    def describe(self) -> str:
        return f"tag {self.name!r}" if self.name else f"tag #{self.index}"


@dataclass(frozen=True, slots=True)
class Member:
    """A tag inside a request: its value starts ``offset`` items (words or bits) in; ``bit``
    picks one bit of the word there (a bool taken from a word read anyway)."""

    index: int
    offset: int
    bit: int | None = None


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read. A memory area read: ``count`` words (or bits, ``bits``) of ``area`` from
    ``start`` (a word, or a bit position ``word * 16 + bit``). A multiple memory area read:
    ``items`` as (area code, word, bit), one value each."""

    members: tuple[Member, ...]
    area: Area | None = None
    start: int = 0
    count: int = 0
    bits: bool = False
    items: tuple[tuple[int, int, int], ...] = ()

    @property
    def is_multiple(self) -> bool:
        return bool(self.items)

    @property
    def size(self) -> int:
        """Values in the answer: words, bits or items."""
        return len(self.items) if self.items else self.count

    def describe(self) -> str:
        if self.items:
            return f"multiple read of {len(self.items)} item{'s' if len(self.items) != 1 else ''}"
        assert self.area is not None
        if self.bits:
            first = f"{self.area.name}{self.start // 16}.{self.start % 16:02d}"
            last = self.start + self.count - 1
            return f"{first}..{self.area.name}{last // 16}.{last % 16:02d} ({self.count} bits)"
        plural = "" if self.count == 1 else "s"
        end = self.start + self.count - 1
        return f"{self.area.name}{self.start}..{self.area.name}{end} ({self.count} word{plural})"


@dataclass(slots=True)
class _Run:
    """A contiguous range being planned: words, or bit positions."""

    area: Area
    bits: bool
    start: int
    end: int
    spans: list[TagSpan]

    @property
    def count(self) -> int:
        return self.end - self.start

    def position(self, span: TagSpan) -> int:
        return span.word * 16 + (span.bit or 0) if self.bits else span.word

    def members(self, base: int = 0) -> tuple[Member, ...]:
        out = []
        for span in self.spans:
            inside_word = span.bit is not None and not self.bits
            out.append(Member(span.index, base + self.position(span) - self.start,
                              span.bit if inside_word else None))
        return tuple(out)

    def items(self) -> list[tuple[int, int, int]]:
        if self.bits:
            return [(self.area.bit_code, p // 16, p % 16) for p in range(self.start, self.end)]
        return [(self.area.word_code, w, 0) for w in range(self.start, self.end)]

    def request(self) -> ReadRequest:
        return ReadRequest(self.members(), self.area, self.start, self.count, self.bits)


def plan_requests(
    spans: Iterable[TagSpan],
    *,
    max_words: int = MAX_READ_WORDS,
    max_gap: int = 0,
    multiple_items: int = 0,
) -> list[ReadRequest]:
    """Cover ``spans`` with as few reads as the limits allow (see the module docstring);
    ``multiple_items`` 0 plans no multiple memory area read. :class:`PlanError` for limits
    outside the protocol's or a tag longer than one read."""
    if not 1 <= max_words <= MAX_READ_WORDS:
        raise PlanError(f"max_request_words must be 1..{MAX_READ_WORDS}, not {max_words}")
    if max_gap < 0:
        raise PlanError(f"max_gap must not be negative, not {max_gap}")
    if not 0 <= multiple_items <= MAX_MULTIPLE_ITEMS:
        raise PlanError(f"max_multiple_items must be 1..{MAX_MULTIPLE_ITEMS}, "
                        f"not {multiple_items}")
    words: dict[str, list[TagSpan]] = {}
    bits: dict[str, list[TagSpan]] = {}
    areas: dict[str, Area] = {}
    for span in spans:
        if span.words < 1 or span.words > max_words:
            raise PlanError(f"{span.describe()} needs {span.words} words but max_request_words "
                            f"is {max_words}: a tag must fit in one read")
        if span.word < 0 or span.word + span.words > span.area.words:
            raise PlanError(f"{span.describe()}: word {span.word} is outside "
                            f"{span.area.name}0..{span.area.name}{span.area.words - 1}")
        areas[span.area.name] = span.area
        (bits if span.bit is not None else words).setdefault(span.area.name, []).append(span)

    runs: list[_Run] = []
    for name in sorted(areas, key=_area_order):
        area = areas[name]
        word_runs = _merge(area, False, words.get(name, []), max_words, max_gap)
        loose: list[TagSpan] = []
        for span in bits.get(name, []):
            home = next((r for r in word_runs if r.start <= span.word < r.end), None)
            if home is None:
                loose.append(span)
            else:
                home.spans.append(span)
        runs += word_runs
        runs += _merge(area, True, loose, max_words, max_gap)
    if multiple_items:
        return _with_multiple_reads(runs, multiple_items)
    return [run.request() for run in runs]


def _area_order(name: str) -> tuple[int, str]:
    order = {"CIO": 0, "W": 1, "H": 2, "A": 3, "D": 4}
    return order.get(name, 5), name


def _merge(area: Area, as_bits: bool, spans: Sequence[TagSpan], limit: int,
           max_gap: int) -> list[_Run]:
    """Greedy from the lowest position: a tag joins the open run when the gap is at most
    ``max_gap`` and the run stays within ``limit``; for intervals this gives the fewest runs."""

    def bounds(span: TagSpan) -> tuple[int, int]:
        if as_bits:
            position = span.word * 16 + (span.bit or 0)
            return position, position + 1
        return span.word, span.word + span.words

    ordered = sorted(spans, key=lambda s: (bounds(s)[0], -bounds(s)[1], s.index))
    runs: list[_Run] = []
    current: _Run | None = None
    for span in ordered:
        start, end = bounds(span)
        if (current is not None and start - current.end <= max_gap
                and max(current.end, end) - current.start <= limit):
            current.spans.append(span)
            current.end = max(current.end, end)
            continue
        current = _Run(area, as_bits, start, end, [span])
        runs.append(current)
    return runs


def _with_multiple_reads(runs: list[_Run], limit: int) -> list[ReadRequest]:
    """Move the smallest runs into multiple memory area reads while that saves requests."""
    candidates = sorted((r for r in runs if r.count <= limit), key=lambda r: r.count)
    best_k, best_cost = 0, len(runs)
    bins, used = 0, limit  # next-fit packing of the k smallest runs
    for k, run in enumerate(candidates, start=1):
        if used + run.count > limit:
            bins, used = bins + 1, 0
        used += run.count
        cost = len(runs) - k + bins
        if cost < best_cost:
            best_k, best_cost = k, cost
    moved = candidates[:best_k]
    moved_ids = {id(r) for r in moved}
    requests = [r.request() for r in runs if id(r) not in moved_ids]
    members: list[Member] = []
    items: list[tuple[int, int, int]] = []
    for run in moved:
        if items and len(items) + run.count > limit:
            requests.append(ReadRequest(tuple(members), items=tuple(items)))
            members, items = [], []
        members += run.members(base=len(items))
        items += run.items()
    if items:
        requests.append(ReadRequest(tuple(members), items=tuple(items)))
    return requests
