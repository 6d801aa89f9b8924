"""The one southbound driver interface.

A driver knows its protocol and nothing else: the device runner
(``gateway/runtime/device_runner.py``) owns the loop, reconnects with
:class:`gateway.backoff.Backoff`, schedules poll groups and marks qualities when
the device goes away.

Contract:
- :meth:`Driver.connect` raises :class:`DeviceUnreachable` when the device
  cannot be reached; :meth:`Driver.read` raises :class:`ConnectionLost` when the
  transport broke. Both make the runner reconnect with backoff.
- A device that answers with an error for some tags (a Modbus exception, a bad
  status) is not a connection failure: ``read`` returns those tags with
  ``Quality.BAD`` and counts the error in :attr:`Driver.errors`.
- Values are raw device values (before scale and offset) as float64; the
  pipeline applies scaling. Timestamps are ns since the epoch (UTC).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Generic, TypeVar

from gateway.errors import ConnectionLost, DeviceUnreachable, DeviceWriteRefused, DriverError
from gateway.types import Quality, SampleBatch

__all__ = [
    "ConnectionLost",
    "DeviceUnreachable",
    "DeviceWriteRefused",
    "Driver",
    "DriverError",
    "Emit",
    "PlanCache",
    "PollGroup",
]

Emit = Callable[[SampleBatch], None]

_Plan = TypeVar("_Plan")


class PlanCache(Generic[_Plan]):
    """A driver's request plans by the tag ids they read, built on first use.

    A poll group asks with the same tuple every poll, so a plan is found by the tuple's
    identity first (an integer's hash), not by hashing thousands of tag ids a poll; an
    equal tuple made elsewhere still finds it by value."""

    __slots__ = ("_build", "_by_id", "_plans")

    def __init__(self, build: Callable[[tuple[int, ...]], _Plan]) -> None:
        self._build = build
        self._plans: dict[tuple[int, ...], _Plan] = {}
        #: id(tag ids) -> (those tag ids, kept so that the id stays theirs; the plan)
        self._by_id: dict[int, tuple[tuple[int, ...], _Plan]] = {}

    def get(self, tag_ids: tuple[int, ...]) -> _Plan:
        known = self._by_id.get(id(tag_ids))
        if known is not None and known[0] is tag_ids:
            return known[1]
        plan = self._plans.get(tag_ids)
        if plan is None:
            plan = self._plans[tag_ids] = self._build(tag_ids)
        if len(self._by_id) < 64:  # the groups of a device; ad-hoc tuples fall back on value
            self._by_id[id(tag_ids)] = (tag_ids, plan)
        return plan

    def clear(self) -> None:
        """Plan again on next use (the device refused a kind of request)."""
        self._plans.clear()
        self._by_id.clear()


@dataclass(frozen=True, slots=True)
class PollGroup:
    """Tags read together at one interval."""

    name: str
    interval: float
    tag_ids: tuple[int, ...]


class TagPositions(Mapping[int, int]):
    """The index of each tag id among a device's ``tag_ids``. The catalog gives a device's
    tags consecutive ids, so this is arithmetic then, a dict otherwise: a dict of 100 ids
    is 4.7 KB, 9 MB at 2,000 devices (issue 21)."""

    __slots__ = ("_count", "_first", "_map")

    def __init__(self, tag_ids: Sequence[int]) -> None:
        count = len(tag_ids)
        self._first = tag_ids[0] if count else 0
        self._count = count
        consecutive = all(b - a == 1 for a, b in pairwise(tag_ids))
        self._map = None if consecutive else {t: i for i, t in enumerate(tag_ids)}

    def __getitem__(self, tag_id: int) -> int:
        if self._map is not None:
            return self._map[tag_id]
        if type(tag_id) is int and 0 <= tag_id - self._first < self._count:
            return tag_id - self._first
        if type(tag_id) is not int and hasattr(tag_id, "__index__"):  # a NumPy integer
            return self[tag_id.__index__()]
        raise KeyError(tag_id)

    def __iter__(self) -> Iterator[int]:
        return iter(self._map if self._map is not None else
                    range(self._first, self._first + self._count))

    def __len__(self) -> int:
        return self._count


class Driver(ABC):
    """Base class of every protocol driver. One instance per configured device."""

    #: quality the runner gives the device's tags from a :class:`ConnectionLost` until the
    #: device is connected again (``BAD`` by default; a driver whose values stay meaningful
    #: as "last known", e.g. OPC UA, says ``STALE``). Never-connected devices are ``BAD``.
    quality_while_lost: Quality = Quality.BAD

    def __init__(
        self, device_name: str, tag_ids: Sequence[int], tag_count: int | None = None
    ) -> None:
        """``tag_ids`` are the catalog ids of the device's tags, in config order;
        ``tag_count`` (the number of tags in the config) is checked against them."""
        self.device_name = device_name
        self.tag_ids = tuple(tag_ids)
        if tag_count is not None and len(self.tag_ids) != tag_count:
            raise ValueError(
                f"device {device_name!r} has {tag_count} tags but {len(self.tag_ids)} "
                "tag ids were given"
            )
        #: index of each tag id in the device's config order
        self.tag_position = TagPositions(self.tag_ids)
        #: error counts by kind (e.g. ``timeout``, ``exception_2``, ``decode``), exported per device
        self.errors: Counter[str] = Counter()

    @abstractmethod
    async def connect(self) -> None:
        """Open the connection. Raise :class:`DeviceUnreachable` with a readable reason."""

    @abstractmethod
    async def close(self) -> None:
        """Close the connection; must not raise and must be safe to call twice."""

    def poll_groups(self) -> Sequence[PollGroup]:
        """Groups for polling drivers; subscription drivers return none."""
        return ()

    async def read(self, group: PollGroup) -> SampleBatch:
        """Read one poll group. Raise :class:`ConnectionLost` when the transport broke."""
        raise NotImplementedError(f"{type(self).__name__} does not poll")

    async def subscribe(self, emit: Emit) -> None:
        """Push drivers: deliver batches to ``emit`` until the connection is lost (raise
        :class:`ConnectionLost`) or the task is cancelled."""
        raise NotImplementedError(f"{type(self).__name__} does not subscribe")

    def awaited_peer(self) -> str | None:
        """What :meth:`connect` waits for when the device calls the gateway rather than the
        other way round (a 4G DTU dialling in), e.g. ``the ascii 'DTU-7' DTU to dial in to
        port 9000 and register``; None for a device the gateway calls. ``check`` says so."""
        return None

    async def identity(self) -> str | None:
        """What the connected device says it is (model, order number, address), for
        ``chenxing-gateway check``; ``None`` when the protocol cannot tell. Never raises
        for an answer the device refuses: say so in the text."""
        return None

    async def write(self, tag_id: int, value: float | bool | str) -> None:
        """Write a raw value to a tag. Raise :class:`DeviceWriteRefused` when the device refuses."""
        raise DeviceWriteRefused(f"{type(self).__name__} does not support writes")
