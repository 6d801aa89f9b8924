"""Which protocol name maps to which device config and driver class.

A new driver adds its config model to ``DEVICE_CONFIG_TYPES`` and its factory
to :func:`create_driver`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.modbus.config import ModbusRtuDeviceConfig, ModbusTcpDeviceConfig
from drivers.opcua.config import OpcUaDeviceConfig
from drivers.serial_line.config import SerialLineDeviceConfig
from firmware_bridge.config import McuNodeDeviceConfig

if TYPE_CHECKING:
    from drivers.base import Driver
    from gateway.config.device import DeviceConfig
    from gateway.serial_ports import SerialPorts
    from gateway.tags import TagCatalog

DEVICE_CONFIG_TYPES = (
    ModbusTcpDeviceConfig, ModbusRtuDeviceConfig, OpcUaDeviceConfig, McuNodeDeviceConfig,
    SerialLineDeviceConfig,
)


def create_driver(device: DeviceConfig, catalog: TagCatalog, ports: SerialPorts) -> Driver:
    """Instantiate the driver for ``device``; its tags are looked up in ``catalog``.

    ``ports``: the runtime's serial ports, shared by the drivers of the devices on one
    serial line (Modbus RTU, MCU nodes) and refused to a second serial-line instrument.
    """
    if isinstance(device, ModbusTcpDeviceConfig):
        from drivers.modbus.driver import ModbusTcpDriver

        return ModbusTcpDriver(device, catalog.ids_of_device(device.name))
    if isinstance(device, ModbusRtuDeviceConfig):
        from drivers.modbus.driver import ModbusRtuDriver

        return ModbusRtuDriver(device, catalog.ids_of_device(device.name), ports)
    if isinstance(device, OpcUaDeviceConfig):
        from drivers.opcua.driver import OpcUaDriver

        return OpcUaDriver(device, catalog.ids_of_device(device.name))
    if isinstance(device, McuNodeDeviceConfig):
        from firmware_bridge.driver import McuNodeDriver

        return McuNodeDriver(device, catalog.ids_of_device(device.name), ports)
    if isinstance(device, SerialLineDeviceConfig):
        from drivers.serial_line.driver import SerialLineDriver

        return SerialLineDriver(device, catalog.ids_of_device(device.name), ports)
    raise ValueError(f"no driver for protocol {device.protocol!r}")
