"""DL/T 645-2007 and -1997 electricity meters: config, data identifier tables, frame and
value codec, request planner and the driver (see README.md).

The driver module imports pyserial; it is loaded on first use of :class:`Dlt645SerialDriver`
or :class:`Dlt645TcpDriver` so that reading configs does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.dlt645.codec import (
    BROADCAST,
    Format,
    Frame,
    FrameReader,
    decode_frame,
    decode_value,
    encode_frame,
    encode_number,
    read_address_request,
    read_request,
    write_request,
)
from drivers.dlt645.config import (
    Dlt645DeviceConfig,
    Dlt645SerialDeviceConfig,
    Dlt645TagConfig,
    Dlt645TcpDeviceConfig,
)
from drivers.dlt645.table import DataIdentifier, Table, table
from gateway.errors import Dlt645FrameError, PlanError
from gateway.lazy_names import lazy_names

if TYPE_CHECKING:
    from drivers.dlt645.driver import Dlt645Driver, Dlt645SerialDriver, Dlt645TcpDriver
    from drivers.dlt645.planner import ReadRequest, TagSpec, plan_requests

__all__ = [
    "BROADCAST",
    "DataIdentifier",
    "Dlt645DeviceConfig",
    "Dlt645Driver",
    "Dlt645FrameError",
    "Dlt645SerialDeviceConfig",
    "Dlt645SerialDriver",
    "Dlt645TagConfig",
    "Dlt645TcpDeviceConfig",
    "Dlt645TcpDriver",
    "Format",
    "Frame",
    "FrameReader",
    "PlanError",
    "ReadRequest",
    "Table",
    "TagSpec",
    "decode_frame",
    "decode_value",
    "encode_frame",
    "encode_number",
    "plan_requests",
    "read_address_request",
    "read_request",
    "table",
    "write_request",
]


#: names read on first use, from the module that defines them: importing the package for
#: its config (the driver registry does) pays for neither these nor the driver (issue 21)
_LAZY = {
    "ReadRequest": "drivers.dlt645.planner",
    "TagSpec": "drivers.dlt645.planner",
    "plan_requests": "drivers.dlt645.planner",
    "Dlt645Driver": "drivers.dlt645.driver",
    "Dlt645SerialDriver": "drivers.dlt645.driver",
    "Dlt645TcpDriver": "drivers.dlt645.driver",
}


__getattr__ = lazy_names(__name__, _LAZY)
