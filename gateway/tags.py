"""The tag catalog: every configured tag with a dense integer id.

Drivers emit batches keyed by these ids; the pipeline keeps per-tag state in
arrays indexed by them; the birth message publishes the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gateway.config.device import DeviceConfig, TagConfig
from gateway.types import INTEGER_RANGES, Classification, DataType

SEPARATOR = "."
_NOT_INTEGER = frozenset({DataType.BOOL, DataType.FLOAT32, DataType.FLOAT64, DataType.STRING})
_WIDE = frozenset({DataType.INT64, DataType.UINT64})


@dataclass(frozen=True, slots=True)
class TagInfo:
    id: int
    device: str
    name: str
    config: TagConfig

    @property
    def path(self) -> str:
        """Name unique in the gateway: ``device.tag``."""
        return f"{self.device}{SEPARATOR}{self.name}"

    @property
    def unit(self) -> str:
        return self.config.unit

    @property
    def type(self) -> DataType:
        return self.config.published_type

    @property
    def classification(self) -> Classification:
        return self.config.classification

    def catalog_entry(self) -> dict[str, object]:
        """The tag as described to the brain at birth."""
        cfg = self.config
        entry: dict[str, object] = {
            "tag": self.path,
            "device": self.device,
            "name": self.name,
            "unit": cfg.unit,
            "type": self.type.value,
            "source_type": cfg.type.value,
            "description": cfg.description,
            "classification": cfg.classification.value,
            "writable": cfg.writable,
        }
        if cfg.range is not None:
            entry["range"] = list(cfg.range)
        return entry


@dataclass(frozen=True, slots=True)
class CatalogChange:
    """Tag ids touched by a config change (see :meth:`TagCatalog.changed_since`)."""

    added: tuple[int, ...]
    redefined: tuple[int, ...]
    retired: tuple[int, ...]

    @property
    def reset(self) -> tuple[int, ...]:
        """Ids whose per-tag state starts afresh."""
        return self.added + self.redefined + self.retired

    def __bool__(self) -> bool:
        return bool(self.added or self.redefined or self.retired)


@dataclass(frozen=True, slots=True)
class WideScaling:
    """Exact scaling of a 64-bit integer tag: ``raw * scale + offset`` in Python ints,
    and the values the published type can hold."""

    scale: int
    offset: int
    low: int
    high: int

    @classmethod
    def of(cls, config: TagConfig) -> WideScaling:
        low, high = INTEGER_RANGES[config.published_type]
        return cls(int(config.scale), int(config.offset), low, high)


class TagCatalog:
    """All tags of a gateway, with per-tag parameters as arrays for vector code.

    Ids are dense at start-up. A live config change builds the next catalog with
    ``previous``: a tag that was there keeps its id (a tag removed and added again gets
    its old id back), a new tag takes the next free id, and a removed tag's id is
    retired, not reused by another tag. So the drivers of unchanged devices, samples in
    flight and the per-tag state of the pipeline stay valid across the change. Per-id
    arrays (``scale``, ``paths``, ...) and :meth:`__getitem__` cover every id ever given
    (``len(catalog)``); :attr:`tags` holds the tags in service, in config order.
    """

    def __init__(self, devices: list[DeviceConfig], previous: TagCatalog | None = None) -> None:
        #: by id: every tag given an id, retired ones with their last definition
        self.slots: list[TagInfo] = list(previous.slots) if previous is not None else []
        #: path -> id of every tag ever given one
        self._ids: dict[str, int] = dict(previous._ids) if previous is not None else {}
        #: the tags in service, in config order
        self.tags: list[TagInfo] = []
        self._by_path: dict[str, int] = {}
        self._by_device: dict[str, list[int]] = {}
        for device in devices:
            ids = self._by_device.setdefault(device.name, [])
            for tag in device.tags:
                path = f"{device.name}{SEPARATOR}{tag.name}"
                if path in self._by_path:
                    raise ValueError(f"duplicate tag {path}")
                tag_id = self._ids.setdefault(path, len(self.slots))
                info = TagInfo(tag_id, device.name, tag.name, tag)
                if tag_id == len(self.slots):
                    self.slots.append(info)
                else:
                    self.slots[tag_id] = info
                self.tags.append(info)
                self._by_path[path] = tag_id
                ids.append(tag_id)
        n = len(self.slots)
        #: per id: the tag is in service (False: retired by a config change)
        self.live: npt.NDArray[np.bool_] = np.zeros(n, dtype=bool)
        self.live[list(self._by_path.values())] = True
        #: every device that ever had a tag id (in service first), and per id its index
        self.device_index: dict[str, int] = {name: i for i, name in enumerate(self._by_device)}
        for t in self.slots:
            self.device_index.setdefault(t.device, len(self.device_index))
        self.device_of: npt.NDArray[np.int32] = np.array(
            [self.device_index[t.device] for t in self.slots], dtype=np.int32)
        cfgs = [t.config for t in self.slots]
        self.scale: npt.NDArray[np.float64] = np.array([c.scale for c in cfgs], np.float64)
        self.offset: npt.NDArray[np.float64] = np.array([c.offset for c in cfgs], np.float64)
        #: -inf means "publish every sample"
        self.deadband: npt.NDArray[np.float64] = np.array(
            [-np.inf if c.deadband is None else c.deadband for c in cfgs], np.float64
        )
        #: 0 means "no heartbeat"
        self.heartbeat_ns: npt.NDArray[np.int64] = np.array(
            [0 if c.heartbeat is None else int(c.heartbeat * 1e9) for c in cfgs], np.int64
        )
        self.is_bool: npt.NDArray[np.bool_] = np.array(
            [c.type is DataType.BOOL for c in cfgs], dtype=bool
        )
        self.is_string: npt.NDArray[np.bool_] = np.array(
            [c.type is DataType.STRING for c in cfgs], dtype=bool
        )
        published = [c.published_type for c in cfgs]  # a property: computed once per tag
        self.is_integer: npt.NDArray[np.bool_] = np.array(
            [p not in _NOT_INTEGER for p in published], dtype=bool)
        #: int64/uint64 tags (as published): their values travel as Python ints, exactly
        self.is_wide: npt.NDArray[np.bool_] = np.array(
            [p in _WIDE for p in published], dtype=bool)
        #: per wide tag id: whole-number scale, offset and the published type's limits
        self.wide: dict[int, WideScaling] = {
            int(i): WideScaling.of(cfgs[i]) for i in np.flatnonzero(self.is_wide)}
        #: each id's path, the very strings keying the path lookup (one copy of each)
        paths: list[str] = [""] * n
        for path, tag_id in self._ids.items():
            paths[tag_id] = path
        self.paths = np.array(paths, dtype=object) if n else np.empty(0, object)

    def changed_since(self, previous: TagCatalog) -> CatalogChange:
        """What a config change did to the tags: ids new in service (added, or back after a
        removal), ids whose definition changed, ids retired."""
        before = len(previous.slots)
        added, redefined = [], []
        for info in self.tags:
            if info.id >= before or not previous.live[info.id]:
                added.append(info.id)
            elif previous.slots[info.id].config != info.config:
                redefined.append(info.id)
        retired = [t for t in range(before) if previous.live[t] and not self.live[t]]
        return CatalogChange(tuple(added), tuple(redefined), tuple(retired))

    def __len__(self) -> int:
        """The size of the id space (per-id arrays); ``len(catalog.tags)`` counts the tags
        in service."""
        return len(self.slots)

    def __getitem__(self, tag_id: int) -> TagInfo:
        return self.slots[tag_id]

    def id_of(self, path: str) -> int:
        return self._by_path[path]

    def get(self, path: str) -> TagInfo | None:
        tag_id = self._by_path.get(path)
        return None if tag_id is None else self.slots[tag_id]

    def ids_of_device(self, device: str) -> list[int]:
        return list(self._by_device.get(device, []))

    def devices(self) -> list[str]:
        return list(self._by_device)
