"""The drivers' error counters in words, for people: one place for every counter name.

Drivers count what went wrong in ``driver.errors`` under short names (``timeout``,
``exception_2``, ``frame_crc``, ``bad_node_id_unknown``): the names of the metrics and
of the health API. Commands that talk to people (``chenxing-gateway check``) say them
with :func:`describe` instead. ``tests/drivers/test_error_words.py`` finds every name
a driver's code can produce and fails when one has no words here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType

__all__ = ["COUNTER_WORDS", "FRAME_REASONS", "describe", "describe_errors", "has_words"]


@dataclass(frozen=True, slots=True)
class Words:
    """What ``n`` counts of a counter mean: ``one`` for a single one, ``many`` with ``{n}``."""

    one: str
    many: str

    def say(self, n: int) -> str:
        return self.one if n == 1 else self.many.format(n=n)


def _counted(noun: str, nouns: str, what: str) -> Words:
    return Words(f"1 {noun} {what}", f"{{n}} {nouns} {what}")


# fmt: off
#: counter name -> words, for the names every driver shares and each driver's own
COUNTER_WORDS: Mapping[str, Words] = MappingProxyType({
    # any driver
    "connection_lost": Words("the connection was lost once", "the connection was lost {n} times"),
    "timeout": _counted("request", "requests", "got no answer in time (timeout)"),
    # Modbus
    "decode": _counted("answer", "answers", "could not be used (wrong length, function code "
                                            "or contents)"),
    "garbled": _counted("answer", "answers", "came garbled (no valid frame, e.g. a CRC error)"),
    "unit_backoff": Words("the unit was backed off once after failures in a row",
                          "the unit was backed off {n} times after failures in a row"),
    "backoff": Words("the unit was backed off once after failures in a row",
                     "the unit was backed off {n} times after failures in a row"),
    "skipped": _counted("read", "reads", "not sent while the unit was backed off"),
    # OPC UA
    "keepalive_missed": Words("the server sent neither data nor keep-alive in time once",
                              "the server sent neither data nor keep-alive in time {n} times"),
    "type_mismatch": _counted("value", "values", "did not fit the tag's type"),
    "null_value": _counted("value", "values", "came empty (null)"),
    "array_without_index": _counted("value", "values", "came as an array but the tag has no "
                                                       "'index'"),
    "index_out_of_range": _counted("array", "arrays", "too short for the tag's 'index'"),
    "write_value": _counted("write", "writes", "refused: the value does not fit the node's type"),
    # Siemens S7
    "put_get_off": _counted("request", "requests", "refused: PUT/GET access is off in the "
                            "PLC (S7-1200/1500: enable it under Protection & Security)"),
    "pdu_refused": _counted("request", "requests", "refused by the PLC as a whole (an S7 "
                            "error class and code)"),
    "address_out_of_range": _counted("read", "reads", "answered 'address out of range' (the "
                                     "DB is shorter, or has optimized block access)"),
    "object_missing": _counted("read", "reads", "answered 'object does not exist' (no such "
                               "DB)"),
    "access_denied": _counted("read", "reads", "answered 'access not allowed' (protection "
                              "level)"),
    "hardware_fault": _counted("read", "reads", "answered 'hardware fault'"),
    "type_unsupported": _counted("read", "reads", "answered 'data type not supported'"),
    "type_inconsistent": _counted("read", "reads", "answered 'data type inconsistent'"),
    "item_error": _counted("read", "reads", "answered a return code the gateway has no words "
                           "for"),
    # Omron FINS
    "plc_error_flag": _counted("answer", "answers", "said the PLC has an error of its own "
                               "(a FINS end code flag: battery, I/O, ...); the values were read"),
    # serial line
    "reconnects": Words("reconnected once", "reconnected {n} times"),
    "no_valid_frame": Words("bytes came but no valid frame within stale_after, once",
                            "bytes came but no valid frame within stale_after, {n} times"),
    "silent": Words("the device went silent once (nothing within stale_after)",
                    "the device went silent {n} times (nothing within stale_after)"),
    "write_failed": _counted("poll command", "poll commands", "could not be written (output "
                                                             "buffer full: flow control held?)"),
    "bytes_discarded": _counted("byte", "bytes", "discarded (not part of a valid frame)"),
    "unsolicited": _counted("frame", "frames", "came unasked between polls"),
    "bad_value": _counted("field", "fields", "did not convert to its tag's value"),
    # DL/T 645 meters
    "unknown_di": _counted("read", "reads", "answered by the meter: it does not have that data "
                                           "identifier"),
    "meter_error": _counted("request", "requests", "answered with an exception frame by the "
                                                   "meter"),
    "other_meter": _counted("answer", "answers", "came from another meter address than the one "
                                                 "asked"),
    # MC protocol (MELSEC)
    "short_answer": _counted("answer", "answers", "came cut off (part of a frame, then nothing "
                                                  "in time)"),
    "resync": Words("the connection was reopened once after an answer went missing or came "
                    "garbled", "the connection was reopened {n} times after an answer went "
                    "missing or came garbled"),
    "late_answer": _counted("answer", "answers", "came after their request had timed out "
                                                 "(dropped)"),
    # MCU sensor node
    "other_node": _counted("frame", "frames", "came from a node id no device is configured for"),
    "node_reboots": Words("the node rebooted once", "the node rebooted {n} times"),
    "sequence_gaps": _counted("gap", "gaps", "in the node's frame sequence"),
    "frames_missed": _counted("frame", "frames", "missed (sequence numbers skipped)"),
    "sequence_backwards": _counted("frame", "frames", "came with a sequence number going back"),
    "unknown_sensor": _counted("tag", "tags", "named a sensor the node does not have"),
    "unit_mismatch": _counted("tag", "tags", "configured in another unit than the node reports"),
    "config_nack": Words("the node refused the settings once",
                         "the node refused the settings {n} times"),
    "node_error": _counted("error", "errors", "reported by the node"),
    "tick_jumps": Words("the node's tick counter jumped once (times taken from arrival)",
                        "the node's tick counter jumped {n} times (times taken from arrival)"),
    "time_out_of_range": _counted("frame", "frames", "carried a clock time past the year 2262 "
                                  "(times taken from arrival)"),
})

#: why a frame was rejected (counter ``frame_<reason>``): serial line, then MCU node
FRAME_REASONS: Mapping[str, str] = MappingProxyType({
    "decode": "not text in the configured encoding",
    "no_match": "did not match the regex",
    "size": "wrong length for the struct format",
    "overflow": "longer than max_frame",
    "partial": "cut off by the start of another frame",
    "incomplete": "a poll answered with bytes but no whole frame",
    "cobs": "bad COBS encoding",
    "short": "shorter than header and CRC",
    "crc": "CRC error",
    "version": "unknown protocol version",
    "type": "unknown message type",
    "oversize": "longer than the largest frame",
    "smp_broken": "a broken firmware-update (SMP) frame",
    "payload": "a payload that does not decode",
})
# fmt: on

_EXCEPTION = "exception_"
_FRAME = "frame_"
_END_CODE = "end_code_"  # FINS
_MC_END_CODE = "mc_end_code_"


def describe(name: str, count: int) -> str:
    """``count`` of counter ``name`` in words (a name without words is shown as it is)."""
    words = COUNTER_WORDS.get(name)
    if words is not None:
        return words.say(count)
    if name.startswith(_EXCEPTION) and name.removeprefix(_EXCEPTION).isdigit():
        return _modbus_exception(int(name.removeprefix(_EXCEPTION)), count)
    if name.startswith(_END_CODE) and _is_hex(name.removeprefix(_END_CODE)):
        return _fins_end_code(int(name.removeprefix(_END_CODE), 16), count)
    if name.startswith(_MC_END_CODE):
        said = _mc_end_code(name, count)
        if said is not None:
            return said
    if name.startswith(_FRAME) and name.removeprefix(_FRAME) in FRAME_REASONS:
        reason = FRAME_REASONS[name.removeprefix(_FRAME)]
        return _counted("frame", "frames", f"rejected: {reason}").say(count)
    status = _opcua_statuses().get(name) if name.startswith(("bad", "uncertain")) else None
    if status is not None:
        status_name, doc = status
        detail = doc.rstrip(".")
        detail = detail[:1].lower() + detail[1:]
        return _counted("answer", "answers",
                        f"came with OPC UA status {status_name} ({detail})").say(count)
    return f"{name}: {count}"


def has_words(name: str) -> bool:
    """True when :func:`describe` says ``name`` in words, not as the bare name."""
    return describe(name, 2) != f"{name}: 2"


def describe_errors(errors: Mapping[str, int]) -> list[str]:
    """Every counter above zero in words, by name."""
    return [describe(name, count) for name, count in sorted(errors.items()) if count]


def _modbus_exception(code: int, count: int) -> str:
    from drivers.modbus.requests import EXCEPTION_NAMES

    name = EXCEPTION_NAMES.get(code, "a code the Modbus specification does not define")
    return _counted("request", "requests",
                    f"answered Modbus exception {code} ({name})").say(count)


def _is_hex(text: str) -> bool:
    return len(text) == 4 and all(c in "0123456789abcdef" for c in text)


def _fins_end_code(code: int, count: int) -> str:
    from drivers.fins.frames import EndCode

    return _counted("request", "requests",
                    f"answered FINS {EndCode(code).describe()}").say(count)


def _mc_end_code(name: str, count: int) -> str | None:
    from drivers.mc.end_codes import code_of, describe_end_code

    code = code_of(name)
    if code is None:
        return None
    return _counted("request", "requests",
                    f"answered MC protocol end code {describe_end_code(code)}").say(count)


@cache
def _opcua_statuses() -> Mapping[str, tuple[str, str]]:
    """OPC UA status counters (``bad_node_id_unknown``) -> the status's name and description."""
    from drivers.opcua.asyncua_adapter import status_counter, status_names

    out = {status_counter(code): (name, doc) for code, (name, doc) in status_names().items()}
    # codes asyncua does not know are counted under their severity alone
    out["bad"] = ("Bad", "a code the OPC UA specification or asyncua does not define")
    out["uncertain"] = ("Uncertain", "a code the OPC UA specification or asyncua does not define")
    return MappingProxyType(out)
