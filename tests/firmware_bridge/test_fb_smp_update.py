"""Firmware update over MCUmgr SMP against the simulated node, over a real pty pair.

The gateway side is smpclient over the shared-port transport; the node side is
hil/devices/smp_server.py (image and OS groups, MCUboot slots).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from firmware_bridge.config import McuNodeDeviceConfig
from firmware_bridge.driver import McuNodeDriver
from firmware_bridge.image import FirmwareImage, build_image
from firmware_bridge.standalone import node_session
from firmware_bridge.update import (
    Phase,
    UpdateOutcome,
    UpdateProgress,
    UpdateTimeouts,
    update_firmware,
)
from gateway.errors import HashMismatch, ImageRefused
from gateway.types import Quality, SampleBatch
from hil.devices.mcu_node import McuNodeSimulator
from hil.devices.pty_link import PtyLink
from hil.devices.smp_server import SmpServer
from tests.waiting import until

FAST = UpdateTimeouts(request=0.6, first_chunk=2.0, reboot=5.0, link=10.0)


def node_config(sim: McuNodeSimulator, **kw: Any) -> McuNodeDeviceConfig:
    body: dict[str, Any] = {
        "name": "node", "protocol": "mcu_node", "port": sim.serial_path,
        "node_id": sim.node_id, "sample_interval": "20ms", "samples_per_frame": 5,
        "stale_after": "3s", "hello_timeout": "500ms",
        "tags": [{"name": "vibration", "sensor": "vibration_rms"},
                 {"name": "temperature", "sensor": "temperature"}],
        **kw,
    }
    return McuNodeDeviceConfig.model_validate(body)


class Readings:
    """Collects what the driver emits; a mark is a position in that stream, not a time."""

    def __init__(self) -> None:
        self.batches: list[SampleBatch] = []

    def __call__(self, batch: SampleBatch) -> None:
        self.batches.append(batch)

    def mark(self) -> int:
        return len(self.batches)

    def good_since(self, mark: int) -> int:
        return sum(int((b.quality == Quality.GOOD).sum()) for b in self.batches[mark:])


@pytest.fixture
async def sim() -> AsyncIterator[McuNodeSimulator]:
    async with McuNodeSimulator(node_id=4, seed=1, boot_time=0.1) as node:
        yield node


async def test_update_happy_path_confirms_and_telemetry_flows() -> None:
    image = build_image((1, 4, 2), 96 * 1024)
    readings = Readings()
    progress: list[UpdateProgress] = []
    # a line paced like 921600 baud: the upload takes ~1.5 s, long enough to see telemetry
    async with McuNodeSimulator(node_id=4, seed=1, boot_time=0.1,
                                line=PtyLink(baudrate=921_600)) as sim, \
            node_session(node_config(sim), readings) as driver:
        await until(lambda: readings.good_since(0) > 10, "telemetry before the update")
        marks: dict[Phase, int] = {}

        def on_progress(p: UpdateProgress) -> None:
            progress.append(p)
            marks.setdefault(p.phase, readings.mark())

        result = await update_firmware(driver, image, progress=on_progress, timeouts=FAST)
        # readings that arrived between the first upload answer and the last one
        during = readings.good_since(marks[Phase.UPLOAD]) - readings.good_since(marks[Phase.TEST])
        after = readings.mark()
        await until(lambda: readings.good_since(after) >= 30)
        assert driver.node is not None and driver.node.firmware == (1, 4, 2)
    assert result.outcome is UpdateOutcome.UPDATED
    assert (result.old_version, result.running_version) == ("1.0.0", "1.4.2")
    assert result.image_sha256 == FirmwareImage.parse(image).sha256.hex()
    assert result.resumes == 0
    uploads = [p.done for p in progress if p.phase is Phase.UPLOAD]
    assert uploads == sorted(uploads) and uploads[-1] == len(image) and len(uploads) > 10
    assert [p.phase for p in progress][-1] is Phase.DONE
    assert during > 20, "telemetry stalled while the image was uploading"
    # the node runs the new image, confirmed: it stays after another reset
    assert sim.smp.slots[0] is not None and sim.smp.slots[0].confirmed
    assert sim.smp.upload_bytes == len(image)
    sim.smp.boot()
    assert sim.firmware == (1, 4, 2)


@pytest.mark.parametrize(("cut_s", "stale_after"), [(1.0, "3s"), (1.5, "500ms")],
                         ids=["short-cut", "cut-past-stale-reconnects"])
async def test_link_cut_mid_upload_resumes_from_the_reported_offset(
    sim: McuNodeSimulator, cut_s: float, stale_after: str,
) -> None:
    image = build_image((2, 0, 0), 128 * 1024)
    offsets: list[int] = []
    cut_at: list[int] = []

    def on_progress(p: UpdateProgress) -> None:
        if p.phase is not Phase.UPLOAD:
            return
        offsets.append(p.done)
        if not cut_at and p.done > len(image) * 0.4:
            cut_at.append(p.done)
            sim.line.cut = True  # the cable is pulled for a second
            asyncio.get_running_loop().call_later(cut_s, setattr, sim.line, "cut", False)

    async with node_session(node_config(sim, stale_after=stale_after)) as driver:
        result = await update_firmware(driver, image, progress=on_progress, timeouts=FAST)
    assert result.outcome is UpdateOutcome.UPDATED and sim.firmware == (2, 0, 0)
    assert result.resumes >= 1
    # the long cut outlasted stale_after: the driver went down and reconnected meanwhile
    assert (driver.errors["silent"] >= 1) == (stale_after == "500ms")
    after_cut = offsets[offsets.index(cut_at[0]) + 1 :]
    assert min(after_cut) >= cut_at[0], "the upload restarted from 0"
    resent = sim.smp.upload_bytes - len(image)
    assert 0 < resent < len(image) // 4, f"{resent} bytes resent"


async def test_an_image_whose_hash_does_not_match_is_refused(sim: McuNodeSimulator) -> None:
    image = build_image((1, 1, 0), 8 * 1024)
    async with node_session(node_config(sim)) as driver:
        with pytest.raises(HashMismatch, match="expected"):
            await update_firmware(driver, image, expected_sha256="00" * 32, timeouts=FAST)
        assert sim.smp.upload_requests == 0  # refused before a byte was sent
        with pytest.raises(ImageRefused, match="MCUboot"):
            await update_firmware(driver, b"\x00" * 4096, timeouts=FAST)
        # the node computes another SHA-256 than the file's (flash corrupted): discarded
        sim.smp.corrupt_flash = True
        with pytest.raises(HashMismatch, match="node's SHA-256"):
            await update_firmware(driver, image, timeouts=FAST)
        assert sim.smp.slots[1] is None and sim.firmware == (1, 0, 0)
        # the port is free again and the node still answers: a good upload works
        sim.smp.corrupt_flash = False
        result = await update_firmware(driver, image, timeouts=FAST)
    assert result.outcome is UpdateOutcome.UPDATED


async def test_a_bad_image_rolls_back_and_is_reported(sim: McuNodeSimulator) -> None:
    image = build_image((3, 0, 0), 16 * 1024, bad=True)
    readings = Readings()
    async with node_session(node_config(sim), readings) as driver:
        result = await update_firmware(driver, image, timeouts=FAST)
        after = readings.mark()
        await until(lambda: readings.good_since(after) >= 20)
        assert driver.node is not None and driver.node.firmware == (1, 0, 0)
    assert result.outcome is UpdateOutcome.ROLLED_BACK
    assert result.running_version == "1.0.0" and "reverted" in result.detail
    assert sim.self_test_failures == 1
    assert sim.smp.slots[0] is not None and sim.smp.slots[0].confirmed


async def test_same_image_is_not_sent_again(sim: McuNodeSimulator) -> None:
    async with node_session(node_config(sim)) as driver:
        result = await update_firmware(driver, sim.smp.running, timeouts=FAST)
    assert result.outcome is UpdateOutcome.ALREADY_RUNNING and sim.smp.upload_requests == 0


def test_mcuboot_reverts_an_image_not_confirmed_before_the_next_reset() -> None:
    old, new = (FirmwareImage.parse(build_image(v, 1024)) for v in ((1, 0, 0), (1, 1, 0)))
    server = SmpServer(old, reset=lambda: None)
    server.slots[1] = type(server.slots[0])(new, pending=True)  # type: ignore[misc]
    assert not server.boot() and server.running.version == (1, 1, 0)  # test boot
    assert server.slots[0] is not None and not server.slots[0].confirmed
    server.boot()  # reset without confirm
    assert server.running.version == (1, 0, 0)
    assert server.slots[0] is not None and server.slots[0].confirmed
    server.boot()
    assert server.running.version == (1, 0, 0)


async def test_driver_refuses_a_second_update_at_once(sim: McuNodeSimulator) -> None:
    image = build_image((1, 2, 0), 64 * 1024)
    async with node_session(node_config(sim)) as driver:
        first = asyncio.create_task(update_firmware(driver, image, timeouts=FAST))
        await until(lambda: driver.smp_sink is not None)
        with pytest.raises(Exception, match="already running"):
            await update_firmware(driver, image, timeouts=FAST)
        assert (await first).outcome is UpdateOutcome.UPDATED
    assert isinstance(driver, McuNodeDriver)
