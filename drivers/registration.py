"""What a driver declares about itself, and what the gateway derives from it.

Each driver folder declares one :class:`DriverRegistration` per protocol in its
``registration.py`` (``REGISTRATIONS``); :mod:`drivers.registry` lists the folders,
one line each. A :class:`DriverRegistry` is built from those registrations, and
everything the gateway knows about drivers comes from it, never from ``isinstance``
over driver or config classes: the discriminated union of device configs (so the
config validation and the JSON Schema), the driver of a device, its serial-port
use (checked when the config is read), its Prometheus families and its
capabilities (writes, firmware update, CLI tools such as ``browse`` and ``scan``).

Driver modules import their protocol library (pymodbus, asyncua, pyserial, ...);
configs must stay importable without paying for them. So a registration names
its driver, metrics and capabilities as ``"package.module:attribute"`` text,
imported on first use; only the config model is imported with the registration.
"""

from __future__ import annotations

import importlib
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, Union, cast

from pydantic import Field, TypeAdapter

from gateway.config.device import DeviceConfig
from gateway.serial_ports import LineSettings, PortUse

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from drivers.base import Driver
    from drivers.firmware import FirmwareUpdates
    from gateway.listen_ports import ListenPorts
    from gateway.serial_ports import SerialPorts
    from gateway.tags import TagCatalog

#: how a driver uses its device's serial port: ``shared`` (one line, several devices of
#: the protocol at the same line settings: Modbus RTU units, MCU nodes) or ``exclusive``
#: (the device needs the port to itself: a serial-line instrument)
SerialUse = Literal["shared", "exclusive"]


class OnSerialPort(Protocol):
    """What a device config of a serial driver has: its port and its line settings."""

    name: str
    protocol: str
    port: str

    @property
    def line_settings(self) -> LineSettings: ...


@dataclass(frozen=True)
class DriverRegistration:
    """One protocol's driver: its config, how to build it, what it can do.

    ``config``: the device config model; its ``protocol: Literal[...]`` field names the
    protocol (the union's discriminator). ``driver``: ``"module:Callable"`` called as
    ``(device, tag_ids)``, or ``(device, tag_ids, ports)`` when ``serial`` is set, or
    ``(device, tag_ids, listen_ports)`` when ``listens`` (its devices dial in to the
    gateway: the runtime's :class:`~gateway.listen_ports.ListenPorts`).
    ``metrics``: ``"module:function"`` called at each scrape with this driver's
    ``{device name: driver or None}`` (registrations naming one function share one call),
    yielding Prometheus families. ``firmware``: ``"module:object"`` implementing
    :class:`drivers.firmware.FirmwareUpdates`. ``tools``: CLI commands by name, each
    ``"module:click_command"``. ``family``: the name of this driver's tools when several
    drivers offer a tool of one name (``chenxing-gateway scan <family> ...``).
    """

    config: type[DeviceConfig]
    driver: str
    serial: SerialUse | None = None
    listens: bool = False
    writes: bool = False
    metrics: str | None = None
    firmware: str | None = None
    tools: Mapping[str, str] = field(default_factory=dict)
    family: str | None = None
    discovery: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (isinstance(self.config, type) and issubclass(self.config, DeviceConfig)):
            raise TypeError(f"registration config {self.config!r} is not a DeviceConfig model")
        refs = [self.driver, self.metrics, self.firmware, *self.tools.values(),
                *self.discovery.values()]
        for ref in refs:
            if ref is not None and not _is_ref(ref):
                raise ValueError(f"{self.config.__name__}: {ref!r} is not 'package.module:name'")
        if self.serial is not None:
            missing = [k for k in ("port", "line_settings") if not hasattr(self.config, k)
                       and k not in self.config.model_fields]
            if missing:
                raise TypeError(f"{self.config.__name__} uses a serial port but has no "
                                f"{' or '.join(missing)}")
        if self.serial is not None and self.listens:
            raise ValueError(f"{self.config.__name__}: a driver uses a serial port or listens, "
                             "not both")
        self.protocols  # noqa: B018 (checks the protocol field)

    @property
    def protocols(self) -> tuple[str, ...]:
        """The protocol names of :attr:`config` (its ``protocol`` field's literals)."""
        info = self.config.model_fields.get("protocol")
        args = typing.get_args(info.annotation) if info is not None else ()
        if info is None or typing.get_origin(info.annotation) is not Literal or not args:
            raise TypeError(f"{self.config.__name__}.protocol must be a Literal of the "
                            "protocol name(s)")
        return tuple(str(a) for a in args)

    @property
    def name(self) -> str:
        """The family (tools, documentation), by default the first protocol."""
        return self.family or self.protocols[0]


def _is_ref(ref: object) -> bool:
    module, sep, attr = ref.partition(":") if isinstance(ref, str) else ("", "", "")
    return bool(sep and module and attr)


def load_ref(ref: str) -> Any:
    """The object named by ``"package.module:attribute"`` (imports the module)."""
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True, eq=False)
class DriverRegistry:
    """The registered drivers, and every lookup the gateway makes of them.

    Immutable; the gateway holds one (:data:`drivers.registry.REGISTRY` unless a test
    or an embedding application builds another with :meth:`including`).
    """

    registrations: tuple[DriverRegistration, ...]
    _by_protocol: dict[str, DriverRegistration] = field(init=False, repr=False)
    #: :meth:`narrowed` registries by the registrations they keep (one model each)
    _narrowed: dict[tuple[int, ...], DriverRegistry] = field(
        init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not self.registrations:
            raise ValueError("a driver registry needs at least one registration")
        by_protocol: dict[str, DriverRegistration] = {}
        for reg in self.registrations:
            for protocol in reg.protocols:
                if protocol in by_protocol:
                    raise ValueError(f"protocol {protocol!r} is registered twice "
                                     f"({by_protocol[protocol].config.__name__}, "
                                     f"{reg.config.__name__})")
                by_protocol[protocol] = reg
        object.__setattr__(self, "_by_protocol", by_protocol)

    @classmethod
    def from_packages(cls, packages: Iterable[str]) -> DriverRegistry:
        """The registrations of each package's ``registration`` module (``REGISTRATIONS``)."""
        found: list[DriverRegistration] = []
        for package in packages:
            module = importlib.import_module(f"{package}.registration")
            regs = getattr(module, "REGISTRATIONS", None)
            if not isinstance(regs, tuple) or not all(
                    isinstance(r, DriverRegistration) for r in regs):
                raise TypeError(f"{package}.registration.REGISTRATIONS must be a tuple of "
                                "DriverRegistration")
            found.extend(regs)
        return cls(tuple(found))

    def including(self, *more: DriverRegistration) -> DriverRegistry:
        """A registry with ``more`` registrations after these."""
        return DriverRegistry((*self.registrations, *more))

    def narrowed(self, protocols: Iterable[str]) -> DriverRegistry:
        """The registrations of ``protocols`` only (each one registered here), in this
        registry's order; the same registry for the same registrations, this one when all
        are kept. A config file is validated against the union of the drivers it names:
        pydantic then builds the validators of those drivers' configs only (each driver's
        is ~0.3-2 MiB of a gateway's memory, all of them ~5 MiB)."""
        wanted = {id(self._by_protocol[p]) for p in protocols}
        kept = tuple(i for i, reg in enumerate(self.registrations) if id(reg) in wanted)
        if len(kept) == len(self.registrations):
            return self
        narrowed = self._narrowed.get(kept)
        if narrowed is None:
            narrowed = DriverRegistry(tuple(self.registrations[i] for i in kept))
            self._narrowed[kept] = narrowed
        return narrowed

    # -- lookups ----------------------------------------------------------------------
    @property
    def protocols(self) -> tuple[str, ...]:
        return tuple(self._by_protocol)

    def get(self, protocol: object) -> DriverRegistration | None:
        """The registration of ``protocol`` (None when no driver speaks it)."""
        return self._by_protocol.get(protocol) if isinstance(protocol, str) else None

    def of(self, device: DeviceConfig) -> DriverRegistration:
        """The registration of a validated device config."""
        reg = self.get(device.protocol)
        if reg is None:
            raise ValueError(f"no driver for protocol {device.protocol!r}")
        return reg

    # -- config -----------------------------------------------------------------------
    @cached_property
    def device_section(self) -> Any:
        """The discriminated union of the registered device configs (for pydantic)."""
        models = tuple(reg.config for reg in self.registrations)
        if len(models) == 1:
            return models[0]
        return Annotated[Union[models], Field(discriminator="protocol")]  # noqa: UP007

    @cached_property
    def device_adapter(self) -> TypeAdapter[DeviceConfig]:
        """Validates one device block against :attr:`device_section`."""
        return TypeAdapter(self.device_section)

    def port_use(self, device: DeviceConfig) -> tuple[str, PortUse] | None:
        """The serial port ``device`` claims and how, or None for a driver without one."""
        reg = self.of(device)
        if reg.serial is None:
            return None
        on_port = cast(OnSerialPort, device)
        return on_port.port, PortUse(device.name, device.protocol, on_port.line_settings,
                                     shared=reg.serial == "shared")

    # -- runtime ----------------------------------------------------------------------
    def create_driver(self, device: DeviceConfig, catalog: TagCatalog,
                      ports: SerialPorts, listen_ports: ListenPorts | None = None) -> Driver:
        """The driver of ``device``; its tags are looked up in ``catalog``. ``ports``: the
        runtime's serial ports, handed to the drivers that use one; ``listen_ports``: its
        listening ports, handed to the drivers whose devices dial in (None: each such
        driver listens on its own)."""
        reg = self.of(device)
        factory = load_ref(reg.driver)
        tag_ids = catalog.ids_of_device(device.name)
        if reg.serial is not None:
            return cast("Driver", factory(device, tag_ids, ports))
        if reg.listens:
            return cast("Driver", factory(device, tag_ids, listen_ports))
        return cast("Driver", factory(device, tag_ids))

    def metrics(self, devices: Iterable[tuple[DeviceConfig, Driver | None]]) -> Iterator[Metric]:
        """The drivers' own Prometheus families, one call per metrics function, each with
        the drivers of the protocols that name it (an empty mapping when none runs)."""
        by_ref: dict[str, dict[str, Driver | None]] = {
            reg.metrics: {} for reg in self.registrations if reg.metrics is not None}
        for device, driver in devices:
            reg = self.get(device.protocol)
            if reg is not None and reg.metrics is not None:
                by_ref[reg.metrics][device.name] = driver
        for ref, drivers in by_ref.items():
            yield from load_ref(ref)(drivers)

    # -- capabilities -----------------------------------------------------------------
    def writes(self, protocol: object) -> bool:
        """Do ``protocol``'s devices take writes (writable tags, commands)?"""
        reg = self.get(protocol)
        return reg is not None and reg.writes

    def firmware_of(self, device: DeviceConfig) -> FirmwareUpdates | None:
        """The firmware-update capability of ``device``'s driver (imports it), or None."""
        reg = self.get(device.protocol)
        if reg is None or reg.firmware is None:
            return None
        return cast("FirmwareUpdates", load_ref(reg.firmware))

    def firmware_protocols(self) -> tuple[str, ...]:
        """The protocols whose devices take firmware updates."""
        return tuple(p for p, reg in self._by_protocol.items() if reg.firmware is not None)

    def tools(self) -> dict[str, list[tuple[str, str]]]:
        """CLI tools by name: ``[(family, "module:command"), ...]``, one per distinct command
        (Modbus TCP and RTU offer one ``scan``)."""
        out: dict[str, list[tuple[str, str]]] = {}
        for reg in self.registrations:
            for tool, ref in reg.tools.items():
                offers = out.setdefault(tool, [])
                if all(ref != known for _, known in offers):
                    offers.append((reg.name, ref))
        return out

