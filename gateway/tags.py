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
    """All tags of a gateway, with per-tag parameters as arrays for vector code."""

    def __init__(self, devices: list[DeviceConfig]) -> None:
        self.tags: list[TagInfo] = []
        self._by_path: dict[str, int] = {}
        self._by_device: dict[str, list[int]] = {}
        for device in devices:
            ids = self._by_device.setdefault(device.name, [])
            for tag in device.tags:
                info = TagInfo(len(self.tags), device.name, tag.name, tag)
                path = info.path
                if path in self._by_path:
                    raise ValueError(f"duplicate tag {path}")
                self.tags.append(info)
                self._by_path[path] = info.id
                ids.append(info.id)
        n = len(self.tags)
        cfgs = [t.config for t in self.tags]
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
        #: each tag's path, the very strings keying the path lookup (one copy of each)
        self.paths = np.array(list(self._by_path), dtype=object) if n else np.empty(0, object)

    def __len__(self) -> int:
        return len(self.tags)

    def __getitem__(self, tag_id: int) -> TagInfo:
        return self.tags[tag_id]

    def id_of(self, path: str) -> int:
        return self._by_path[path]

    def get(self, path: str) -> TagInfo | None:
        tag_id = self._by_path.get(path)
        return None if tag_id is None else self.tags[tag_id]

    def ids_of_device(self, device: str) -> list[int]:
        return list(self._by_device.get(device, []))

    def devices(self) -> list[str]:
        return list(self._by_device)
