"""The MCUmgr SMP server of a simulated MCU node: image and OS groups, MCUboot slot logic.

Requests and responses are the ``smp`` package's message models. Supported:

- image group: state read, state write (``confirm=False`` + hash: test the
  secondary image on the next boot; ``confirm=True``: make the running image
  permanent), upload (``off``/``len``/``sha``/``data``; an upload with ``off=0``
  whose ``sha`` and ``len`` match an unfinished one resumes: the answer is the
  offset already stored, as Zephyr's img_mgmt does);
- OS group: echo, reset (the node reboots after the answer went out), MCUmgr
  parameters (``buf_size``, ``buf_count``).

Slots (MCUboot swap semantics): slot 0 is primary (the running image), slot 1
secondary (the upload target). At boot, a secondary image marked for test is
swapped in and runs *unconfirmed*; a primary image still unconfirmed at the next
boot is swapped back out (revert). An image whose body starts with
:data:`firmware_bridge.image.BAD_MARKER` fails its self-test right after boot:
the node resets at once and MCUboot reverts, so it returns on its old image.
Images are the format in ``firmware_bridge/image.py``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import cbor2
from smp import header as smphdr
from smp import image_management as smpimg
from smp import os_management as smpos
from smp import packet as smppacket
from smp.error import MGMT_ERR
from smp.exceptions import SMPBadContinueDelimiter, SMPBadCRC, SMPBadStartDelimiter

from firmware_bridge.image import BAD_MARKER, FirmwareImage
from gateway.errors import ImageError

log = logging.getLogger(__name__)

_IMAGE = smphdr.GroupId.IMAGE_MANAGEMENT
_OS = smphdr.GroupId.OS_MANAGEMENT
_IMG_CMD = smphdr.CommandId.ImageManagement
_OS_CMD = smphdr.CommandId.OSManagement
#: the SMP line length on the wire (the MCUmgr convention)
LINE_LENGTH = 128


@dataclass(slots=True)
class Slot:
    image: FirmwareImage
    confirmed: bool = False
    pending: bool = False  # secondary: test it at the next boot

    @property
    def bad(self) -> bool:
        return self.image.data[32 : 32 + len(BAD_MARKER)] == BAD_MARKER


@dataclass(slots=True)
class _Upload:
    size: int
    sha: bytes | None
    data: bytearray


class SmpServer:
    """Answers SMP frames for one node; ``reset`` is called to reboot the node."""

    def __init__(self, primary: FirmwareImage, reset: Callable[[], None],
                 buf_size: int = 2048, slot_size: int = 1 << 20) -> None:
        self.slots: list[Slot | None] = [Slot(primary, confirmed=True), None]
        self.buf_size = buf_size
        self.slot_size = slot_size
        #: bytes of image data received in upload requests (resent bytes included)
        self.upload_bytes = 0
        self.upload_requests = 0
        self.resets = 0
        #: when True, the flash stores one flipped byte: the upload's hash will not match
        self.corrupt_flash = False
        self._reset = reset
        self._upload: _Upload | None = None
        self._decoder = self._new_decoder()

    @property
    def running(self) -> FirmwareImage:
        slot = self.slots[0]
        assert slot is not None
        return slot.image

    # -- wire ---------------------------------------------------------------------------
    def feed_line(self, line: bytes) -> list[bytes]:
        """One SMP serial fragment (``06 09``/``04 14`` ... ``0a``) in; answer lines out."""
        try:
            self._decoder.send(line)
        except StopIteration as done:
            self._decoder = self._new_decoder()
            answer = self.handle(bytes(done.value))
            if answer is None:
                return []
            return list(smppacket.encode(answer, line_length=LINE_LENGTH))
        except (SMPBadStartDelimiter, SMPBadContinueDelimiter, SMPBadCRC, ValueError) as exc:
            log.debug("smp: dropped a broken packet: %s", exc)
            self._decoder = self._new_decoder()
        return []

    @staticmethod
    def _new_decoder():  # type: ignore[no-untyped-def]
        decoder = smppacket.decode()
        next(decoder)
        return decoder

    def handle(self, frame: bytes) -> bytes | None:
        """One SMP request frame in, its response frame out (None: not answered)."""
        try:
            header = smphdr.Header.loads(frame[: smphdr.Header.SIZE])
        except Exception:  # a garbled header is not answered, like a real node
            return None
        key = (header.group_id, header.command_id, header.op)
        seq = header.sequence
        try:
            match key:
                case (_IMAGE, _IMG_CMD.STATE, smphdr.OP.READ):
                    return self._states(smpimg.ImageStatesReadResponse, seq)
                case (_IMAGE, _IMG_CMD.STATE, smphdr.OP.WRITE):
                    return self._state_write(smpimg.ImageStatesWriteRequest.loads(frame), seq)
                case (_IMAGE, _IMG_CMD.UPLOAD, smphdr.OP.WRITE):
                    return self._upload_chunk(smpimg.ImageUploadWriteRequest.loads(frame), seq)
                case (_OS, _OS_CMD.ECHO, smphdr.OP.WRITE):
                    req = smpos.EchoWriteRequest.loads(frame)
                    return smpos.EchoWriteResponse(sequence=seq, r=req.d).BYTES
                case (_OS, _OS_CMD.RESET, smphdr.OP.WRITE):
                    self.resets += 1
                    self._reset()
                    return smpos.ResetWriteResponse(sequence=seq).BYTES
                case (_OS, _OS_CMD.MCUMGR_PARAMETERS, smphdr.OP.READ):
                    return smpos.MCUMgrParametersReadResponse(
                        sequence=seq, buf_size=self.buf_size, buf_count=4).BYTES
        except Exception as exc:  # a request the models refuse
            return _error(header, MGMT_ERR.EINVAL, str(exc)[:60])
        return _error(header, MGMT_ERR.ENOTSUP, "not supported")

    # -- image group ----------------------------------------------------------------------
    def _states(self, model: type[smpimg.ImageStatesReadResponse], seq: int) -> bytes:
        images = []
        for index, slot in enumerate(self.slots):
            if slot is None:
                continue
            primary = index == 0
            images.append(smpimg.ImageState(
                slot=index, version=slot.image.version_text, hash=slot.image.sha256,
                bootable=True, pending=slot.pending, confirmed=slot.confirmed and primary,
                active=primary, permanent=False,
            ))
        return model(sequence=seq, images=images).BYTES

    def _state_write(self, req: smpimg.ImageStatesWriteRequest, seq: int) -> bytes:
        primary, secondary = self.slots
        assert primary is not None
        if req.confirm and (req.hash is None or req.hash == primary.image.sha256):
            if primary.bad:
                return _error(req.header, MGMT_ERR.EBADSTATE, "self-test failed")
            primary.confirmed = True
        elif req.confirm:
            return _error(req.header, MGMT_ERR.EINVAL, "confirm names no running image")
        elif secondary is not None and req.hash == secondary.image.sha256:
            secondary.pending = True
        else:
            return _error(req.header, MGMT_ERR.ENOENT, "no image with that hash")
        return self._states(smpimg.ImageStatesWriteResponse, seq)

    def _upload_chunk(self, req: smpimg.ImageUploadWriteRequest, seq: int) -> bytes:
        self.upload_requests += 1
        self.upload_bytes += len(req.data)
        up = self._upload
        if req.off == 0:
            if req.len is None:
                return _error(req.header, MGMT_ERR.EINVAL, "len missing")
            if up is not None and req.sha and up.sha == req.sha and up.size == req.len \
                    and len(up.data) < up.size:
                log.info("smp: upload resumes at %d of %d", len(up.data), up.size)
                return smpimg.ImageUploadWriteResponse(sequence=seq, off=len(up.data)).BYTES
            if req.len > self.slot_size:
                return _error(req.header, MGMT_ERR.ENOMEM, "image larger than the slot")
            up = self._upload = _Upload(req.len, req.sha, bytearray())
            self.slots[1] = None  # erasing the secondary slot
        elif up is None or req.off != len(up.data):
            at = 0 if up is None else len(up.data)
            return smpimg.ImageUploadWriteResponse(sequence=seq, off=at).BYTES
        up.data += req.data[: up.size - len(up.data)]
        if len(up.data) < up.size:
            return smpimg.ImageUploadWriteResponse(sequence=seq, off=len(up.data)).BYTES
        return self._finish_upload(up, seq)

    def _finish_upload(self, up: _Upload, seq: int) -> bytes:
        self._upload = None
        data = bytes(up.data)
        if self.corrupt_flash:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        match = None if up.sha is None else hashlib.sha256(data).digest() == up.sha
        if match is False:
            log.warning("smp: uploaded image does not match its SHA-256; discarded")
            return smpimg.ImageUploadWriteResponse(sequence=seq, off=up.size, match=False).BYTES
        try:
            self.slots[1] = Slot(FirmwareImage.parse(data))
        except ImageError as exc:
            log.warning("smp: uploaded image refused: %s", exc)
            return _error_v1(seq, _IMAGE, _IMG_CMD.UPLOAD, MGMT_ERR.EINVAL, str(exc)[:60])
        return smpimg.ImageUploadWriteResponse(sequence=seq, off=up.size, match=match).BYTES

    # -- MCUboot ------------------------------------------------------------------------
    def boot(self) -> bool:
        """What MCUboot does at reset; True when the image that now runs is a bad one."""
        primary, secondary = self.slots
        assert primary is not None
        if secondary is not None and secondary.pending:
            log.info("mcuboot: testing %s (was %s)", secondary.image.version_text,
                     primary.image.version_text)
            self.slots = [Slot(secondary.image, confirmed=False), Slot(primary.image, True)]
        elif not primary.confirmed and secondary is not None:
            log.warning("mcuboot: %s was not confirmed: reverting to %s",
                        primary.image.version_text, secondary.image.version_text)
            self.slots = [Slot(secondary.image, confirmed=True), Slot(primary.image)]
        running = self.slots[0]
        assert running is not None
        return running.bad and not running.confirmed


def _error(header: smphdr.Header, rc: MGMT_ERR, reason: str) -> bytes:
    return _error_v1(header.sequence, header.group_id, header.command_id, rc, reason)


def _error_v1(seq: int, group: int, command: int, rc: MGMT_ERR, reason: str) -> bytes:
    """An SMP version-1 error answer (``rc``, ``rsn``) for any group."""
    payload = cbor2.dumps({"rc": int(rc), "rsn": reason}, canonical=True)
    header = smphdr.Header(op=smphdr.OP.WRITE_RSP, version=smphdr.Version.V1,
                           flags=smphdr.Flag(0), length=len(payload), group_id=group,
                           sequence=seq, command_id=command)
    return bytes(header) + payload
