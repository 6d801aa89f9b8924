"""The gateway's exception hierarchy, in one place.

Every exception the project raises on purpose is defined here and derives from
:class:`GatewayError`, in families that say what went wrong or what was refused::

    GatewayError
    ├── ConfigError                 a config file is invalid (every problem, with file, line, key)
    ├── ReloadRefused               a new config cannot be applied to the running gateway
    ├── ConfigEditRefused           an edit of the config text (config API) cannot be made
    ├── ConfigStoreError            the versioned config store (state_dir/config)
    │   ├── ConfigVersionUnknown    ... has no such version (never applied, or pruned)
    │   └── ConfigStoreLocked       ... is held by a running gateway (a rollback asks it)
    ├── DriverError                 southbound: a device or its driver
    │   ├── DeviceUnreachable       connect failed: refused, timeout, DNS, no such port
    │   │   └── PortConflict        a serial port claimed with other line settings or protocol
    │   ├── ConnectionLost          an established connection broke
    │   │   └── UndecodableAnswer   ... closed by the driver after an answer it cannot decode
    │   ├── RequestFailed           one request got no usable answer: its tags are BAD
    │   │   └── RequestRefused      ... the device answered with an error code
    │   │       └── S7JobRefused    ... an S7 PLC refused a whole job (PUT/GET off ...)
    │   ├── DeviceWriteRefused      the device or its driver refused a write
    │   └── PlanError               a device's tags cannot be covered by requests
    ├── ProtocolError               bytes or values that do not follow the protocol
    │   ├── RegisterDecodeError     Modbus registers that do not have the shape asked for
    │   ├── ConversionError         an OPC UA value that does not fit the tag (or node)
    │   ├── InstrumentFrameRejected a serial-line instrument's frame is not valid
    │   ├── S7FrameError, S7DecodeError   an S7 answer or value that is not valid
    │   ├── Dlt645FrameError        a DL/T 645 frame or value the standard does not allow
    │   ├── FinsFrameError          an Omron FINS or FINS/TCP frame that is not valid
    │   ├── McFrameError            bytes that are not the MC protocol (SLMP) answer asked for
    │   ├── NodeFrameError, CobsError, MessageError   MCU node link (firmware_bridge)
    │   ├── SparkplugDecodeError    not a Sparkplug B payload
    │   └── JsonTooDeep             JSON nested past the limit
    ├── SpoolError                  the disk spool
    │   ├── SpoolLocked             another process holds the spool
    │   └── PayloadError            a spooled payload cannot be read back
    ├── SinkError                   optional sinks
    │   ├── InfluxWriteFailed       a write worth retrying
    │   └── InfluxBatchRefused      the server refused the batch; retrying will not help
    ├── CommandRefused              a command from the brain is not executed
    │   ├── MalformedCommand        the payload is not a valid command
    │   ├── WriteRefused            a write fails a check (allow-list, range, rate)
    │   ├── FirmwareCommandRefused  a firmware_update command is refused
    │   └── DeployRefused           a config/apply or model/deploy is refused, nothing changed
    ├── FirmwareUpdateError         a firmware update did not happen (the node stays bootable)
    │   ├── ImageRefused            the image is not sent
    │   │   ├── HashMismatch        ... its SHA-256 is not the one expected
    │   │   └── ImageError          ... it is not an MCUboot image
    │   ├── NodeRefused             the node answered an SMP request with an error
    │   └── FirmwareApiError        the gateway's firmware API refused or failed the update
    ├── AccessError                 the local API's users, sessions and requests
    │   ├── UserStoreError          the user store cannot be read or written
    │   ├── UserRefused             a user change is refused (exists, bad name, last admin)
    │   │   └── UnknownUser         ... there is no such user
    │   ├── PasswordRejected        a password fails the policy (length, character classes)
    │   └── ApiRefused              an HTTP request is answered 4xx (status, code, message)
    ├── BundleRefused               a signed bundle (config, model, firmware) is refused: ``reason``
    ├── ModelLoadError              a model or its manifest was refused
    └── ModelRunError               an inference failed

Where callers (or the standard library's conventions) expect a built-in type, an
exception also derives from it: decode errors stay :class:`ValueError`,
:class:`PayloadError` stays :class:`OSError`. Third-party libraries' exceptions are
translated into these at their adapters (``map_<library>_errors``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


# -- configuration --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a config file: where it is and what is wrong."""

    file: str
    line: int
    path: tuple[str | int, ...]
    message: str
    #: 1-based column of the spot (0: the whole line or key); with ``source``, the line's
    #: text, the problem is shown with a caret under the column (YAML syntax errors)
    column: int = 0
    source: str = ""
    #: what to do about it, in plain words
    hint: str = ""

    @property
    def path_text(self) -> str:
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text or "(top level)"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.column:
            where += f":{self.column}"
        head = f"{where}: {self.message}" if self.column and not self.path else (
            f"{where}: {self.path_text}: {self.message}")
        return head + "".join(f"\n    {line}" for line in self.detail_lines())

    def detail_lines(self) -> list[str]:
        """The source line with a caret under the column, and the hint (may be empty)."""
        lines = []
        if self.source and self.line and self.column:
            number = str(self.line)
            lines += [f"{number} | {self.source}",
                      f"{' ' * len(number)} | {' ' * (self.column - 1)}^"]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return lines


class ConfigError(GatewayError):
    """The configuration is invalid; carries every problem found, not only the first."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        count = len(problems)
        header = f"{count} configuration error{'s' if count != 1 else ''}"
        super().__init__(header + ":\n" + "\n".join(f"  {p}" for p in problems))


class UnlocatedProblem(GatewayError):
    """A YAML file read without noting lines met a problem, whose message needs them: the
    reader reads it again, noting them (never leaves gateway/config/yaml_reader.py)."""


class NotBlockYaml(GatewayError):
    """A YAML text leaves the plain block subset that gateway/config/yaml_block.py reads line
    by line: the full reader reads it (never leaves that module)."""


class ReloadRefused(GatewayError):
    """The new config cannot be applied to the running gateway; the message says why."""


class ConfigEditRefused(GatewayError):
    """An edit of the config text cannot be made: ``reason`` is ``not_found`` (no such device
    or tag), ``exists`` (the name is taken) or ``shape`` (the part is written in a way an
    edit does not splice: flow style, an alias); the message says which part."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ConfigStoreError(GatewayError):
    """The versioned config store in the state folder cannot be read or written."""


class ConfigVersionUnknown(ConfigStoreError):
    """The config store has no such version (never applied, or pruned since)."""


class ConfigStoreLocked(ConfigStoreError):
    """A running gateway holds the config store; ``pid`` is its process id."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


# -- southbound: devices and drivers -----------------------------------------------------


class DriverError(GatewayError):
    """Base of southbound driver errors."""


class DeviceUnreachable(DriverError):
    """The device cannot be reached (refused, timeout, DNS): reconnect with backoff."""


class PortConflict(DeviceUnreachable):
    """A device claims a serial port that the devices already on it cannot share with it
    (other line settings or protocol)."""


class ConnectionLost(DriverError):
    """An established connection to the device broke: reconnect with backoff."""


class UndecodableAnswer(ConnectionLost):
    """An answer the protocol library could not decode came on a stream connection; the
    driver closed the connection, its byte stream being out of step (reconnect)."""


class RequestFailed(DriverError):
    """One request got no usable answer (none in time, garbled, not the one asked for):
    the tags of that request become BAD; the connection stays.

    ``counter`` is the driver's error counter for it (``timeout``, ``garbled``,
    ``decode``, ``exception_2``...); ``reason`` the readable line (it may be extended).
    """

    def __init__(self, counter: str, reason: str) -> None:
        super().__init__(reason)
        self.counter = counter
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class RequestRefused(RequestFailed):
    """The device answered the request with an error code (a Modbus exception, a bad
    OPC UA status); ``code`` is that code."""

    def __init__(self, counter: str, reason: str, code: int) -> None:
        super().__init__(counter, reason)
        self.code = code


class S7JobRefused(RequestRefused):
    """An S7 PLC answered a whole job with an error class and code in its header
    (``code``: class << 8 | code; 0x8104: PUT/GET access off)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__("pdu_refused", reason, code)


class DeviceWriteRefused(DriverError):
    """A write did not reach the device's value: the device said no, or its driver refused
    it (not writable on this device, a value the device's type cannot hold)."""


class PlanError(DriverError, ValueError):
    """A device's tags cannot be covered by requests within the configured limits."""


# -- bytes and values that do not follow the protocol -----------------------------------------


class ProtocolError(GatewayError):
    """Bytes or values from a peer (a device, a node, the brain) that do not follow the
    protocol. Each subclass is also a :class:`ValueError` unless said otherwise."""


class RegisterDecodeError(ProtocolError, ValueError):
    """A Modbus response (or another protocol's words decoded with the register codec, as
    the MC protocol's) does not have the shape its request asked for."""


class ConversionError(ProtocolError, ValueError):
    """An OPC UA value that does not fit the tag (or a write that does not fit the node).

    ``counter`` names the error counter it is counted under."""

    def __init__(self, counter: str, message: str) -> None:
        super().__init__(message)
        self.counter = counter


class InstrumentFrameRejected(ProtocolError):
    """A serial-line instrument's frame is not valid as a whole; ``reason`` is a short
    counter name (``decode``, ``no_match``, ``size``...). Not a ValueError."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class FinsFrameError(ProtocolError, ValueError):
    """An Omron FINS (or FINS/TCP) frame that does not follow the protocol: too short, a
    command where a response is due, data of the wrong length; ``counter`` names the error
    counter it is counted under (``garbled``, ``decode``)."""

    def __init__(self, counter: str, message: str) -> None:
        super().__init__(message)
        self.counter = counter


class McFrameError(ProtocolError, ValueError):
    """Bytes that are not the MC protocol (SLMP) answer to the request sent; ``counter`` is
    ``garbled`` (not an answer frame at all: the stream is out of step) or ``decode`` (an
    answer, but not to this request); ``reason`` is the readable line."""

    def __init__(self, counter: str, reason: str) -> None:
        super().__init__(reason)
        self.counter = counter
        self.reason = reason


class NodeFrameError(ProtocolError, ValueError):
    """An MCU node frame that cannot be decoded; ``reason`` (a
    :class:`~firmware_bridge.frames.BadFrame`) says why."""

    def __init__(self, reason: Any, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


class S7FrameError(ProtocolError, ValueError):
    """An S7 answer that is not the PDU it should be (garbled, cut short, another
    reference)."""


class S7DecodeError(ProtocolError, ValueError):
    """Bytes that are not a valid value of their S7 type."""


class Dlt645FrameError(ProtocolError, ValueError):
    """Bytes or values that DL/T 645 does not allow (a wrong length, not BCD, a bad
    address or checksum)."""


class CobsError(ProtocolError, ValueError):
    """The bytes are not a valid COBS encoding."""


class MessageError(ProtocolError, ValueError):
    """An MCU node frame whose payload does not match its message type's layout."""


class SparkplugDecodeError(ProtocolError, ValueError):
    """The bytes are not a Sparkplug B payload this decoder understands."""


class JsonTooDeep(ProtocolError, ValueError):
    """The JSON is nested more than ``max_depth`` levels deep.

    ``shallow`` is the document with each value that opens past the limit replaced by
    null (None when even that is not valid JSON), computed on first use."""

    def __init__(self, max_depth: int, shallow: Callable[[], Any]) -> None:
        super().__init__(f"nested more than {max_depth} levels deep")
        self.max_depth = max_depth
        self._shallow = shallow

    @cached_property
    def shallow(self) -> Any:
        return self._shallow()


# -- northbound: spool and sinks -------------------------------------------------------


class SpoolError(GatewayError):
    """Base of disk spool errors."""


class SpoolLocked(SpoolError):
    """Another process (a running gateway) holds the spool."""


class PayloadError(SpoolError, OSError):
    """A spooled payload could not be read back (missing segment, short read, wrong frame)."""


class SinkError(GatewayError):
    """Base of the optional sinks' errors (InfluxDB)."""


class InfluxWriteFailed(SinkError):
    """A write to InfluxDB worth retrying; ``retry_after`` is the server's hint in seconds."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class InfluxBatchRefused(SinkError):
    """InfluxDB refused the batch for what it contains; retrying will not help."""

    def __init__(self, reason: str, status: int = 0) -> None:
        super().__init__(reason)
        self.status = status


# -- commands from the brain -------------------------------------------------------------


class CommandRefused(GatewayError):
    """A command is not executed; ``reason`` (also ``str(exc)``) is what is answered."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedCommand(CommandRefused):
    """The payload is not a valid command; ``command_id`` is set when it could be read."""

    def __init__(self, reason: str, command_id: str | None = None) -> None:
        super().__init__(reason)
        self.command_id = command_id


class WriteRefused(CommandRefused):
    """A write fails a check (unknown or read-only tag, range, rate); ``reason`` says which."""


class FirmwareCommandRefused(CommandRefused):
    """A ``firmware_update`` command is not executed; ``str(exc)`` is the reason answered."""


class DeployRefused(CommandRefused):
    """A ``config/apply`` or ``model/deploy`` from the brain is refused before anything
    changed (not enabled, no models folder, a file it would overwrite); ``str(exc)`` is the
    reason answered."""


# -- firmware updates ------------------------------------------------------------------------


class FirmwareUpdateError(GatewayError):
    """The firmware update could not be done; the node still runs a bootable image."""


class ImageRefused(FirmwareUpdateError):
    """The image is not sent: not an MCUboot image, or its SHA-256 is not the one expected."""


class HashMismatch(ImageRefused):
    """The image's SHA-256 differs from the expected one (locally, or as the node computed)."""


class ImageError(ImageRefused, ValueError):
    """A file that is not a firmware image this gateway can send (no MCUboot header)."""


class NodeRefused(FirmwareUpdateError):
    """The node answered an SMP request (upload, image state, reset) with an error."""


class FirmwareApiError(FirmwareUpdateError):
    """The gateway's firmware API refused or failed the update; ``status`` is the HTTP
    status (200: failed after it started)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


# -- the local API: users, sessions, requests -------------------------------------------------


class AccessError(GatewayError):
    """Users, sessions and requests of the local HTTP API."""


class UserStoreError(AccessError):
    """The user store (``{state_dir}/users.json``) cannot be read or written."""


class UserRefused(AccessError):
    """A user change is refused: an existing user, a bad name or role, the last admin."""


class UnknownUser(UserRefused):
    """A change names a user the store does not have."""


class PasswordRejected(AccessError):
    """A new password fails the policy (``http.auth``: length, character classes)."""


class ApiRefused(AccessError):
    """An HTTP request answered with a 4xx: ``status``, a short ``code`` and the message,
    sent as the API's one error body ``{"error": message, "code": code, "status": status}``."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
# -- signed bundles --------------------------------------------------------------------------


class BundleRefused(GatewayError):
    """A signed bundle (a config, a model package, a firmware image: :mod:`gateway.bundles`)
    is refused. ``reason`` is a short code (``unsigned``, ``bad_signature``, ``unknown_key``,
    ``key_not_allowed``, ``file_mismatch``, ``payload_mismatch``, ``stale_version``,
    ``malformed``, ``wrong_kind``, ``state_unreadable``); ``detail`` (also ``str(exc)``) the
    readable line."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# -- edge models -------------------------------------------------------------------------


class ModelLoadError(GatewayError):
    """A model (or its manifest) was refused; the message says why."""


class ModelRunError(GatewayError):
    """An inference failed."""
