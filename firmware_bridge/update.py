"""Firmware update of an MCU node over MCUmgr SMP, on the port the node driver owns.

:class:`FirmwareUpdater` runs the MCUboot sequence with smpclient (through
:class:`~firmware_bridge.smp_adapter.SmpSession`) over
:class:`~firmware_bridge.smp_adapter.SharedLineTransport`:

1. check the image (MCUboot header, optional expected SHA-256: refused before a byte is sent);
2. read the image state (an image already running is not sent again);
3. upload in chunks with the image's SHA-256; when the link is cut, wait for the
   node to answer again and upload again: the node reports the offset it already
   holds (MCUmgr resumes an upload whose ``sha`` and ``len`` match), so only the
   chunk in flight is sent twice;
4. mark the new image for test, reset the node, wait for its HELLO;
5. running the new version: confirm it (an image that refuses to confirm is reset
   away: MCUboot reverts). Back on the old version: report the rollback.

Telemetry keeps flowing: SMP lines and telemetry frames share the port and its
one reader. :func:`update_firmware` is the entry point for the CLI, the brain
command and HIL scenarios. Failures are :class:`~gateway.errors.FirmwareUpdateError`
(:class:`~gateway.errors.ImageRefused`, :class:`~gateway.errors.HashMismatch` before a
byte is sent; :class:`~gateway.errors.NodeRefused` when the node answers no).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from firmware_bridge.driver import McuNodeDriver
from firmware_bridge.image import FirmwareImage
from firmware_bridge.messages import Hello
from firmware_bridge.smp_adapter import SharedLineTransport, SmpSession
from gateway.errors import (
    ConnectionLost,
    FirmwareUpdateError,
    HashMismatch,
    ImageRefused,
    NodeRefused,
)

log = logging.getLogger(__name__)

class UpdateOutcome(enum.StrEnum):
    UPDATED = "updated"
    ROLLED_BACK = "rolled_back"
    ALREADY_RUNNING = "already_running"


class Phase(enum.StrEnum):
    CHECK = "check"
    UPLOAD = "upload"
    TEST = "test"
    RESET = "reset"
    CONFIRM = "confirm"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class UpdateProgress:
    """Where the update is: ``done`` of ``total`` image bytes the node holds."""

    phase: Phase
    done: int
    total: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class UpdateResult:
    device: str
    outcome: UpdateOutcome
    old_version: str
    image_version: str
    running_version: str
    image_sha256: str
    size: int
    resumes: int
    seconds: float
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, enum.Enum) else v for k, v in asdict(self).items()}


ProgressCallback = Callable[[UpdateProgress], None]


@dataclass(frozen=True, slots=True)
class UpdateTimeouts:
    """Seconds. ``request``: one SMP request; ``link``: waiting for a cut link to return."""

    request: float = 2.5
    first_chunk: float = 10.0  # the node may erase the slot first
    reboot: float = 15.0
    link: float = 30.0
    max_resumes: int = 10


class FirmwareUpdater:
    """Runs one update on one node driver (connected, owning the port)."""

    def __init__(self, driver: McuNodeDriver, timeouts: UpdateTimeouts | None = None,
                 progress: ProgressCallback | None = None) -> None:
        self.driver = driver
        self.timeouts = timeouts or UpdateTimeouts()
        self._progress = progress
        self._hellos: asyncio.Queue[tuple[Hello, bool]] = asyncio.Queue()
        self.transport = SharedLineTransport(driver)
        self.resumes = 0

    async def run(self, image: FirmwareImage | bytes,
                  expected_sha256: str | bytes | None = None) -> UpdateResult:
        try:
            return await self._run(image, expected_sha256)
        except ConnectionLost as exc:  # the link cut in a step that does not resume
            raise FirmwareUpdateError(f"{exc}; the node keeps a bootable image (MCUboot)"
                                      ) from exc

    async def _run(self, image: FirmwareImage | bytes,
                   expected_sha256: str | bytes | None) -> UpdateResult:
        started = time.monotonic()
        image = check_image(image, expected_sha256)
        drv = self.driver
        if drv.smp_sink is not None:
            raise FirmwareUpdateError(f"{drv.device_name}: a firmware update is already running")
        if drv.node is None:
            raise FirmwareUpdateError(
                f"{drv.device_name}: the node has not said HELLO (not connected)")
        others = sorted(set(drv.line_node_ids) - {drv.config.node_id})
        if others:
            raise FirmwareUpdateError(
                f"{drv.device_name}: nodes {others} share {drv.config.port}; SMP frames carry "
                "no node id: update on a point-to-point link")
        old = _version(drv.node.firmware)
        remove = drv.add_hello_listener(lambda h, fresh: self._hellos.put_nowait((h, fresh)))
        session = SmpSession(self.transport, drv.device_name, drv.config.port,
                             self.timeouts.request)
        try:
            await session.connect()
            self._report(Phase.CHECK, 0, image.size)
            if await session.active_image_hash() == image.sha256:
                return self._result(image, UpdateOutcome.ALREADY_RUNNING, old, old, started,
                                    "the node already runs this image")
            await self._upload(session, image)
            await session.mark_for_test(image.sha256)
            self._report(Phase.TEST, image.size, image.size, "marked for test")
            hello = await self._reset_and_wait(session, image.size)
            running = _version(hello.firmware)
            if hello.firmware == image.version:
                try:
                    await session.confirm(image.sha256)
                except NodeRefused as refused:
                    log.warning("%s: %s refused to confirm (%s): resetting to revert",
                                drv.device_name, running, refused)
                else:
                    self._report(Phase.DONE, image.size, image.size, f"running {running}")
                    return self._result(image, UpdateOutcome.UPDATED, old, running, started)
                hello = await self._reset_and_wait(session, image.size)
                running = _version(hello.firmware)
                detail = f"{image.version_text} refused to confirm; the node reverted to {running}"
            else:
                detail = (f"the node came back on {running}, not {image.version_text}: "
                          "MCUboot reverted (the new image did not confirm)")
            log.warning("%s: firmware update rolled back: %s", drv.device_name, detail)
            self._report(Phase.DONE, image.size, image.size, detail)
            return self._result(image, UpdateOutcome.ROLLED_BACK, old, running, started, detail)
        finally:
            remove()
            await session.disconnect()

    # -- steps ----------------------------------------------------------------------------
    async def _upload(self, session: SmpSession, image: FirmwareImage) -> None:
        t = self.timeouts
        while True:
            try:
                async for offset in session.upload(image.data, t.first_chunk, t.request):
                    self._report(Phase.UPLOAD, offset, image.size)
                return
            except ConnectionLost as exc:
                self.resumes += 1
                if self.resumes > t.max_resumes:
                    raise FirmwareUpdateError(f"{self.driver.device_name}: upload failed after "
                                              f"{t.max_resumes} resumes: {exc}") from None
                log.warning("%s: upload interrupted (%s); resuming when the node answers",
                            self.driver.device_name, exc or type(exc).__name__)
                await self._wait_for_link()

    async def _wait_for_link(self) -> None:
        """Until the node says HELLO again (asked every second); UpdateError after ``link`` s."""
        deadline = time.monotonic() + self.timeouts.link
        while time.monotonic() < deadline:
            _drain(self._hellos)
            with contextlib.suppress(ConnectionLost):  # port down: its runner reconnects it
                self.driver.request_hello()
            try:
                await asyncio.wait_for(self._hellos.get(), 1.0)
                return
            except TimeoutError:
                continue
        raise FirmwareUpdateError(f"{self.driver.device_name}: no answer from the node for "
                                  f"{self.timeouts.link:g} s")

    async def _reset_and_wait(self, session: SmpSession, size: int) -> Hello:
        _drain(self._hellos)
        self._report(Phase.RESET, size, size, "resetting the node")
        try:
            await session.reset()
        except ConnectionLost as exc:  # the node may reset before its answer is out
            log.info("%s: no answer to reset (%s); waiting for the node", self.driver.device_name,
                     exc)
        deadline = time.monotonic() + self.timeouts.reboot
        while (left := deadline - time.monotonic()) > 0:
            try:
                hello, fresh = await asyncio.wait_for(self._hellos.get(), left)
            except TimeoutError:
                break
            if fresh:
                self._report(Phase.CONFIRM, size, size,
                             f"node back on {_version(hello.firmware)}")
                return hello
        raise FirmwareUpdateError(f"{self.driver.device_name}: the node did not come back "
                                  f"within {self.timeouts.reboot:g} s of the reset")

    def _report(self, phase: Phase, done: int, total: int, detail: str = "") -> None:
        if self._progress is not None:
            self._progress(UpdateProgress(phase, done, total, detail))

    def _result(self, image: FirmwareImage, outcome: UpdateOutcome, old: str, running: str,
                started: float, detail: str = "") -> UpdateResult:
        return UpdateResult(self.driver.device_name, outcome, old, image.version_text, running,
                            image.sha256.hex(), image.size, self.resumes,
                            round(time.monotonic() - started, 3), detail)


async def update_firmware(driver: McuNodeDriver, image: FirmwareImage | bytes, *,
                          expected_sha256: str | bytes | None = None,
                          progress: ProgressCallback | None = None,
                          timeouts: UpdateTimeouts | None = None) -> UpdateResult:
    """Update the node behind ``driver`` (connected) to ``image``; see the module docstring.

    Raise :class:`~gateway.errors.ImageRefused` / :class:`~gateway.errors.HashMismatch`
    before anything is written, :class:`~gateway.errors.FirmwareUpdateError` when the node
    does not cooperate. A rollback is a result
    (``outcome == "rolled_back"``), not an exception.
    """
    return await FirmwareUpdater(driver, timeouts, progress).run(image, expected_sha256)


def check_image(image: FirmwareImage | bytes,
                expected: str | bytes | None = None) -> FirmwareImage:
    """The parsed image; ImageRefused (ImageError) / HashMismatch when it cannot be sent."""
    if not isinstance(image, FirmwareImage):
        image = FirmwareImage.parse(image)
    if expected is not None:
        try:
            want = expected if isinstance(expected, bytes) else bytes.fromhex(expected)
        except ValueError:
            raise ImageRefused(f"expected SHA-256 {expected!r} is not hexadecimal") from None
        if want != image.sha256:
            raise HashMismatch(f"the image's SHA-256 is {image.sha256.hex()}, "
                               f"expected {want.hex()}: refused")
    return image


def _version(v: tuple[int, int, int]) -> str:
    return ".".join(map(str, v))


def _drain(queue: asyncio.Queue[Any]) -> None:
    while not queue.empty():
        queue.get_nowait()


__all__ = [
    "FirmwareUpdater",
    "Phase",
    "UpdateOutcome",
    "UpdateProgress",
    "UpdateResult",
    "UpdateTimeouts",
    "update_firmware",
]
