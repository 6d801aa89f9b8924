"""The tag catalog: every configured tag with a dense integer id.

Drivers emit batches keyed by these ids; the pipeline keeps per-tag state in
arrays indexed by them; the birth message publishes the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        entry: dict[str, object] = {  # the enums' _value_: .value is a slower descriptor
            "tag": f"{self.device}{SEPARATOR}{self.name}",
            "device": self.device,
            "name": self.name,
            "unit": cfg.unit,
            "type": cfg.published_type._value_,
            "source_type": cfg.type._value_,
            "description": cfg.description,
            "classification": cfg.classification._value_,
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


_NOT_INTEGER = frozenset({DataType.BOOL, DataType.FLOAT32, DataType.FLOAT64, DataType.STRING})


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
        #: path -> id of every tag ever given one (those in service: :attr:`live`); the
        #: only map by path (one entry and one path string a tag: issue 21)
        self._ids: dict[str, int] = dict(previous._ids) if previous is not None else {}
        #: the tags in service, in config order
        self.tags: list[TagInfo] = []
        in_service: set[str] = set()
        self._by_device: dict[str, list[int]] = {}
        #: device name -> its config, to know an unchanged device the next time
        self._devices: dict[str, DeviceConfig] = {}
        before = previous._devices if previous is not None else {}
        dirty: list[int] = []  # ids whose definition is new: their array entries are set
        dirty_paths: list[str] = []  # and their paths (the strings the map keeps)
        for device in devices:
            self._devices[device.name] = device
            if previous is not None and before.get(device.name) is device:
                self._keep_device(device.name, previous, in_service)  # the same object
                continue
            ids = self._by_device.setdefault(device.name, [])
            for tag in device.tags:
                path = f"{device.name}{SEPARATOR}{tag.name}"
                if path in in_service:
                    raise ValueError(f"duplicate tag {path}")
                in_service.add(path)
                tag_id = self._ids.setdefault(path, len(self.slots))
                info = TagInfo(tag_id, device.name, tag.name, tag)
                if tag_id == len(self.slots):
                    self.slots.append(info)
                    dirty.append(tag_id)
                    dirty_paths.append(path)
                else:
                    if self.slots[tag_id].config is not tag:
                        dirty.append(tag_id)
                        dirty_paths.append(path)
                    self.slots[tag_id] = info
                self.tags.append(info)
                ids.append(tag_id)
        del in_service
        n = len(self.slots)
        #: per id: the tag is in service (False: retired by a config change)
        self.live: npt.NDArray[np.bool_] = np.zeros(n, dtype=bool)
        self.live[[t.id for t in self.tags]] = True
        #: every device that ever had a tag id (in service first), and per id its index
        self.device_index: dict[str, int] = {name: i for i, name in enumerate(self._by_device)}
        for t in self.slots:
            self.device_index.setdefault(t.device, len(self.device_index))
        self._arrays(previous, dirty, dirty_paths)

    def _keep_device(self, name: str, previous: TagCatalog, in_service: set[str]) -> None:
        """A device whose config did not change: its tags as they were."""
        ids = previous._by_device.get(name, [])
        self._by_device[name] = list(ids)
        for tag_id in ids:
            info = previous.slots[tag_id]
            self.tags.append(info)
            in_service.add(previous.paths[tag_id])

    def _arrays(self, previous: TagCatalog | None, dirty: list[int],
                dirty_paths: list[str]) -> None:
        """The per-id arrays: those of ``previous`` (grown to the new ids), with the entries
        of ``dirty`` ids set from their definitions (all of them at start-up)."""
        n = len(self.slots)
        grow = n - (len(previous) if previous is not None else 0)

        def start(name: str, fill: object, dtype: npt.DTypeLike) -> npt.NDArray[Any]:
            if previous is None:
                return np.full(n, fill, dtype=dtype)
            old: npt.NDArray[Any] = getattr(previous, name)
            return np.concatenate([old, np.full(grow, fill, dtype=dtype)]) if grow else old.copy()

        old_names = list(previous.device_index) if previous is not None else []
        remap = np.array([self.device_index.get(d, -1) for d in old_names], dtype=np.int32)
        #: per id: the index of its device in :attr:`device_index`
        self.device_of: npt.NDArray[np.int32] = np.concatenate(
            [remap[previous.device_of] if previous is not None and len(previous.device_of)
             else np.empty(0, np.int32), np.zeros(grow, np.int32)]).astype(np.int32)
        self.scale: npt.NDArray[np.float64] = start("scale", 1.0, np.float64)
        self.offset: npt.NDArray[np.float64] = start("offset", 0.0, np.float64)
        #: -inf means "publish every sample"
        self.deadband: npt.NDArray[np.float64] = start("deadband", -np.inf, np.float64)
        #: 0 means "no heartbeat"
        self.heartbeat_ns: npt.NDArray[np.int64] = start("heartbeat_ns", 0, np.int64)
        self.is_bool: npt.NDArray[np.bool_] = start("is_bool", False, np.bool_)
        self.is_string: npt.NDArray[np.bool_] = start("is_string", False, np.bool_)
        self.is_integer: npt.NDArray[np.bool_] = start("is_integer", False, np.bool_)
        #: int64/uint64 tags (as published): their values travel as Python ints, exactly
        self.is_wide: npt.NDArray[np.bool_] = start("is_wide", False, np.bool_)
        #: per wide tag id: whole-number scale, offset and the published type's limits
        self.wide: dict[int, WideScaling] = dict(previous.wide) if previous is not None else {}
        self.paths: npt.NDArray[np.object_] = start("paths", None, object)
        if not dirty:
            return
        infos = [self.slots[i] for i in dirty]
        cfgs = [t.config for t in infos]
        types = [t.type for t in infos]
        self.device_of[dirty] = [self.device_index[t.device] for t in infos]
        self.scale[dirty] = [c.scale for c in cfgs]
        self.offset[dirty] = [c.offset for c in cfgs]
        self.deadband[dirty] = [-np.inf if c.deadband is None else c.deadband for c in cfgs]
        self.heartbeat_ns[dirty] = [0 if c.heartbeat is None else int(c.heartbeat * 1e9)
                                    for c in cfgs]
        self.is_bool[dirty] = [c.type is DataType.BOOL for c in cfgs]
        self.is_string[dirty] = [c.type is DataType.STRING for c in cfgs]
        self.is_integer[dirty] = [t not in _NOT_INTEGER for t in types]
        wide = [t in _WIDE for t in types]
        self.is_wide[dirty] = wide
        for info, is_wide in zip(infos, wide, strict=True):
            if is_wide:
                self.wide[info.id] = WideScaling.of(info.config)
            else:
                self.wide.pop(info.id, None)
        self.paths[dirty] = dirty_paths

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
        """The id of the tag in service at ``path``; KeyError when there is none."""
        tag_id = self._ids[path]
        if not self.live[tag_id]:
            raise KeyError(path)
        return tag_id

    def get(self, path: str) -> TagInfo | None:
        tag_id = self._ids.get(path)
        return None if tag_id is None or not self.live[tag_id] else self.slots[tag_id]

    def ids_of_device(self, device: str) -> list[int]:
        return list(self._by_device.get(device, []))

    def devices(self) -> list[str]:
        return list(self._by_device)
