"""The ``firmware_update`` command from the brain: allow-listed images only, audited, answered.

Payload (JSON contract, ``cmd`` topic)::

    {"v": 1, "type": "firmware_update", "id": "fw-0042",
     "device": "spindle-3-node", "image": "node-1.4.2.bin", "sha256": "<64 hex>"}

Accepted only when ``device``'s driver takes firmware updates (its registration's
``firmware`` capability, :mod:`drivers.firmware`: MCU nodes) and its config has a
``firmware`` block, ``image`` is a plain file name listed in its ``allow`` with
this ``sha256``, the file is in the device's firmware folder and hashes to it,
the device is up and no update of it is running. Anything else is answered
``rejected`` with the reason, and nothing is sent to the device.

The file may be a signed bundle (``docs/bundles.md``): it is then verified (trusted
key allowed to sign firmware, hashes, the image's version is the manifest's, newer than
the version the device got from a bundle last) before anything is sent, and its version
is recorded once the device runs it. With ``bundles.require_signed`` a raw image is
refused. A bundle refused is answered ``rejected`` with its reason (``bad_signature:
...``) and audited twice: the ``bundle`` event with the reason, the ``firmware`` one.

The update runs in the background (the command queue is not held for minutes);
the answer comes when it ends: ``accepted`` (updated, or already running the
image), ``failed`` (rolled back, or the node did not cooperate). Every step is
in the audit log as a ``firmware`` event (``rejected``, ``started``, and the outcome).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.firmware import ROLLED_BACK, FirmwareUpdates
from gateway import json_input
from gateway.bundles import BundleVerifier, VerifiedBundle
from gateway.bundles.firmware import unwrap_firmware
from gateway.commands.audit import AuditLog
from gateway.commands.parse import (
    CONTRACT_VERSION,
    MAX_ID_LENGTH,
    MAX_PAYLOAD_BYTES,
    peek_command_id,
    shallow_json,
)
from gateway.commands.result import CommandResult
from gateway.errors import BundleRefused, FirmwareUpdateError, JsonTooDeep
from gateway.errors import FirmwareCommandRefused as Refused

if TYPE_CHECKING:
    from drivers.base import Driver
    from drivers.firmware import FirmwareAllowList
    from drivers.registration import DriverRegistry
    from gateway.config.device import DeviceConfig

log = logging.getLogger(__name__)

COMMAND_TYPE = "firmware_update"
_KEYS = frozenset({"v", "type", "id", "device", "image", "sha256", "gateway", "ts", "site",
                   "line"})
_MAX_IMAGE_BYTES = 16 * 1024 * 1024
#: finished command ids remembered to answer duplicate deliveries without updating again
RECENT_RESULTS = 256

Finish = Callable[[CommandResult], None]


@dataclass(frozen=True, slots=True)
class FirmwareTarget:
    """A device the brain may update: its allow-list and its driver's firmware capability."""

    allow_list: FirmwareAllowList
    updates: FirmwareUpdates


@dataclass(frozen=True, slots=True)
class FirmwareCommand:
    id: str
    device: str
    image: str
    sha256: str


class FirmwareCommands:
    """Checks and runs ``firmware_update`` commands (one update per device at a time)."""

    def __init__(
        self,
        devices: Mapping[str, FirmwareTarget],
        config_dir: Path | None,
        gateway_id: str,
        driver_of: Callable[[str], Driver | None],
        audit: AuditLog,
        timeouts: object | None = None,
        device_kinds: str = "device with firmware updates",
        verifier: Callable[[], BundleVerifier] | None = None,
    ) -> None:
        """``timeouts``: passed to the capability's update (None: its defaults);
        ``device_kinds``: what the devices are called in a refusal ("MCU node");
        ``verifier``: the signed-bundle checks of the current config (None: every file is
        sent as it is)."""
        self._verifier = verifier
        self._devices = devices
        self._device_kinds = device_kinds
        self._config_dir = config_dir or Path(".")
        self._gateway_id = gateway_id
        self._driver_of = driver_of
        self._audit = audit
        self._timeouts = timeouts
        self._running: dict[str, asyncio.Task[None]] = {}
        #: command ids in progress, and the results of finished ones (duplicate deliveries)
        self._in_progress: set[str] = set()
        self._results: OrderedDict[str, CommandResult] = OrderedDict()
        #: called when a device runs a new image (the births' inventory lists it)
        self.on_updated: Callable[[], None] | None = None

    @staticmethod
    def handles(payload: bytes) -> bool:
        """Is this a ``firmware_update`` command (and not a write command)?"""
        if len(payload) > MAX_PAYLOAD_BYTES or COMMAND_TYPE.encode() not in payload:
            return False  # too big: refused by the command parser
        body = shallow_json(payload)  # too deep: malformed, but answered as a firmware_update
        return isinstance(body, dict) and body.get("type") == COMMAND_TYPE

    def submit(self, topic: str, payload: bytes, retained: bool, finish: Finish) -> None:
        """Check the command now: answer a refusal at once, run an accepted one in background."""
        command_id = peek_command_id(payload)
        try:
            if retained:
                raise Refused("retained commands are never executed (publish with retain=false)")
            command = self.parse(payload)
            command_id = command.id
            if self._duplicate(command, topic, finish):
                return
            driver, image = self._check(command)
        except Refused as exc:
            self._audit.record("firmware", id=command_id, topic=topic, outcome="rejected",
                               reason=str(exc))
            finish(CommandResult(command_id, "rejected", str(exc)))
            return
        self._audit.record("firmware", id=command.id, topic=topic, outcome="started",
                           device=command.device, image=command.image, sha256=command.sha256)
        self._in_progress.add(command.id)

        def done(result: CommandResult) -> None:
            self._in_progress.discard(command.id)
            self._results[command.id] = result
            while len(self._results) > RECENT_RESULTS:
                self._results.popitem(last=False)
            finish(result)

        task = asyncio.get_running_loop().create_task(
            self._run(command, topic, driver, image, done), name=f"firmware-{command.device}")
        self._running[command.device] = task
        task.add_done_callback(lambda _t: self._running.pop(command.device, None))

    def retarget(self, other: FirmwareCommands | None) -> None:
        """A live config change: the devices (and their allow-lists) of ``other`` from now on
        (None: no device takes updates any more); updates running go on."""
        self._devices = other._devices if other is not None else {}
        if other is not None:
            self._device_kinds = other._device_kinds

    async def close(self) -> None:
        """Cancel running updates (the node keeps a bootable image: MCUboot)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- checks -------------------------------------------------------------------------
    def _duplicate(self, cmd: FirmwareCommand, topic: str, finish: Finish) -> bool:
        """A redelivered command: repeat its answer, or wait for the running update's."""
        if cmd.id in self._in_progress:
            self._audit.record("firmware", id=cmd.id, topic=topic, outcome="duplicate",
                               reason="the update is running; it will be answered once")
            return True
        earlier = self._results.get(cmd.id)
        if earlier is None:
            return False
        self._audit.record("firmware", id=cmd.id, topic=topic, outcome="duplicate",
                           reason="already executed; the earlier result is repeated")
        finish(CommandResult(earlier.id, earlier.status, earlier.reason, duplicate=True))
        return True

    def parse(self, payload: bytes) -> FirmwareCommand:
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise Refused(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        try:
            body: Any = json_input.loads(payload)
        except JsonTooDeep as exc:
            raise Refused(f"malformed JSON: {exc}") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise Refused(f"not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise Refused("a command is a JSON object")
        unknown = sorted(set(body) - _KEYS)
        if unknown:
            raise Refused(f"unknown field(s): {', '.join(unknown)}")
        if body.get("v") != CONTRACT_VERSION:
            raise Refused(f"unsupported contract version {body.get('v')!r}")
        if "gateway" in body and body["gateway"] != self._gateway_id:
            raise Refused(f"addressed to gateway {body['gateway']!r}, this is "
                          f"{self._gateway_id!r}")
        fields = {}
        for key in ("id", "device", "image", "sha256"):
            value = body.get(key)
            if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
                raise Refused(f"'{key}' must be a non-empty string")
            fields[key] = value
        return FirmwareCommand(fields["id"], fields["device"], fields["image"],
                               fields["sha256"].lower())

    def _check(self, cmd: FirmwareCommand) -> tuple[Driver, bytes]:
        target = self._devices.get(cmd.device)
        if target is None:
            raise Refused(f"{cmd.device}: no such {self._device_kinds} device")
        fw = target.allow_list
        if not fw.allow:
            raise Refused(f"{cmd.device}: firmware updates from the brain are not enabled "
                          "(no firmware.allow in its config)")
        allowed = {a.file: a.sha256.lower() for a in fw.allow}
        if cmd.image not in allowed:
            raise Refused(f"{cmd.device}: image {cmd.image!r} is not allow-listed "
                          f"(allowed: {', '.join(sorted(allowed))})")
        if allowed[cmd.image] != cmd.sha256:
            raise Refused(f"{cmd.device}: sha256 of {cmd.image!r} does not match the allow-list")
        folder = fw.folder if fw.folder.is_absolute() else self._config_dir / fw.folder
        path = folder / cmd.image
        try:
            if path.stat().st_size > _MAX_IMAGE_BYTES:
                raise Refused(f"{path}: larger than {_MAX_IMAGE_BYTES} bytes")
            data = path.read_bytes()
        except OSError as exc:
            raise Refused(f"{cmd.device}: cannot read {path}: {exc.strerror}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != cmd.sha256:
            raise Refused(f"{path}: the file's sha256 is {actual}, not the allow-listed one")
        if cmd.device in self._running:
            raise Refused(f"{cmd.device}: an update is already running")
        driver = self._driver_of(cmd.device)
        if driver is None:
            raise Refused(f"{cmd.device}: the device is not up")
        return driver, data

    # -- signed bundles -------------------------------------------------------------------
    def _unwrap(self, cmd: FirmwareCommand, data: bytes,
                updates: FirmwareUpdates) -> tuple[bytes, VerifiedBundle | None]:
        """The image to send: the file itself, or the image in the signed bundle it is
        (verified, audited). Runs in a thread: the image check may import the capability's
        libraries."""
        if self._verifier is None:
            return data, None
        return unwrap_firmware(self._verifier(), data, device=cmd.device, updates=updates,
                               source=f"cmd {cmd.id}")

    def _applied(self, bundle: VerifiedBundle, cmd: FirmwareCommand) -> None:
        assert self._verifier is not None
        try:
            self._verifier().applied(bundle, f"cmd {cmd.id}")
        except (OSError, BundleRefused) as exc:  # the update happened; the record did not
            log.error("%s: firmware %s applied, but its version was not recorded: %s",
                      cmd.device, bundle.version, exc)

    # -- running ------------------------------------------------------------------------
    async def _run(self, cmd: FirmwareCommand, topic: str, driver: Driver, data: bytes,
                   finish: Finish) -> None:
        updates = self._devices[cmd.device].updates
        try:
            image, bundle = await asyncio.to_thread(self._unwrap, cmd, data, updates)
        except BundleRefused as exc:
            reason = f"{exc.reason}: {exc.detail}"
            self._audit.record("firmware", id=cmd.id, topic=topic, outcome="rejected",
                               device=cmd.device, reason=reason)
            finish(CommandResult(cmd.id, "rejected", reason))
            return
        try:
            # the allow-list's sha256 is the file's; a bundle's image is vouched for by it
            result = await updates.update(
                driver, image, expected_sha256=cmd.sha256 if bundle is None else None,
                timeouts=self._timeouts)
        except FirmwareUpdateError as exc:
            self._audit.record("firmware", id=cmd.id, topic=topic, outcome="failed",
                               device=cmd.device, reason=str(exc))
            finish(CommandResult(cmd.id, "failed", str(exc)))
            return
        except Exception as exc:  # a bug must not leave the command unanswered
            log.exception("firmware update of %s crashed", cmd.device)
            self._audit.record("firmware", id=cmd.id, topic=topic, outcome="failed",
                               device=cmd.device, reason=f"internal error: {exc}")
            finish(CommandResult(cmd.id, "failed", "internal error in the gateway"))
            return
        ok = result.outcome != ROLLED_BACK
        if ok and bundle is not None:  # the version file is fsync'd: off the event loop
            await asyncio.to_thread(self._applied, bundle, cmd)
        if ok and self.on_updated is not None:
            self.on_updated()
        reason = (f"{result.outcome}: {cmd.device} runs {result.running_version} "
                  f"(was {result.old_version})" + (f"; {result.detail}" if result.detail else ""))
        self._audit.record("firmware", id=cmd.id, topic=topic, outcome=str(result.outcome),
                           **{k: v for k, v in result.as_dict().items() if k != "outcome"})
        finish(CommandResult(cmd.id, "accepted" if ok else "failed", reason))


def firmware_commands(drivers: DriverRegistry, devices: list[DeviceConfig],
                      config_dir: Path | None, gateway_id: str,
                      driver_of: Callable[[str], Driver | None],
                      audit: AuditLog,
                      verifier: Callable[[], BundleVerifier] | None = None,
                      ) -> FirmwareCommands | None:
    """The handler for the gateway's devices whose driver takes firmware updates and whose
    config has a ``firmware`` block, or None when there is none. ``verifier``: the checks
    of signed bundles under the current config."""
    targets: dict[str, FirmwareTarget] = {}
    kinds: dict[str, None] = {}
    for device in devices:
        updates = drivers.firmware_of(device)
        if updates is None:
            continue
        kinds[updates.device_kind] = None
        allow_list = updates.allow_list(device)
        if allow_list is not None:
            targets[device.name] = FirmwareTarget(allow_list, updates)
    if not targets:
        return None
    return FirmwareCommands(targets, config_dir, gateway_id, driver_of, audit,
                            device_kinds=" or ".join(kinds), verifier=verifier)
