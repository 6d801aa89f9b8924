"""The firmware update functions HIL scenarios call (hil/firmware_update.py)."""

from __future__ import annotations

from typing import Any

import pytest

from firmware_bridge.update import UpdateTimeouts
from hil.devices.mcu_node import McuNodeSimulator
from hil.firmware_update import FirmwareUpdateFailed, test_image, update_on_port

FAST = UpdateTimeouts(request=0.6, first_chunk=2.0, reboot=5.0, link=5.0)


async def test_update_on_port_reports_update_and_rollback() -> None:
    async with McuNodeSimulator(node_id=2, boot_time=0.1) as sim:
        device = {"name": "n2", "protocol": "mcu_node", "port": sim.serial_path,
                  "node_id": 2, "tags": [{"name": "t", "sensor": "temperature"}]}
        events: list[dict[str, Any]] = []
        result = await update_on_port(device, test_image((1, 2, 0)), progress=events.append,
                                      timeouts=FAST)
        assert result["outcome"] == "updated" and result["running_version"] == "1.2.0"
        assert events[-1]["phase"] == "done" and any(e["phase"] == "upload" for e in events)
        result = await update_on_port(device, test_image((1, 3, 0), bad=True), timeouts=FAST)
        assert result["outcome"] == "rolled_back" and result["running_version"] == "1.2.0"
        with pytest.raises(FirmwareUpdateFailed, match="expected"):
            await update_on_port(device, test_image((1, 3, 0)), sha256="0" * 64)
        assert sim.firmware == (1, 2, 0)
