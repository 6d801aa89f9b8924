"""Register maps of the generic Modbus simulator: the YAML file, its validation, waveforms.

A map lists the device's values (table, address, type, byte order, initial value,
optional waveform) and its faults per address range. See ``hil/maps/`` for an
example and ``hil/README.md`` for the reference. Errors name file, line and key
(the gateway config's machinery, :func:`gateway.config.yaml_model.validate_yaml_text`).
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from drivers.modbus.codec import encode, encode_string
from drivers.modbus.config import REGISTER_TYPES, ByteOrder, Table
from gateway.config.types import Duration, PositiveDuration, StrictModel
from gateway.config.yaml_model import line_of, validate_yaml_text
from gateway.errors import ConfigError, ConfigProblem
from gateway.types import INTEGER_RANGES, DataType

__all__ = ["Fault", "ModbusMap", "RegisterEntry", "load_map"]

BIT_TABLES = ("coil", "discrete")
#: exception codes a simulator can answer (pymodbus's ExcCodes)
EXCEPTION_CODES = (1, 2, 3, 4, 5, 6, 7, 8, 10, 11)
MAX_REGISTER_ADDRESS = 65535


class Constant(StrictModel):
    kind: Literal["constant"]


class Ramp(StrictModel):
    """value + rate * t, wrapped into [low, high) when both are given."""

    kind: Literal["ramp"]
    rate: float = Field(description="change per second")
    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _range(self) -> Ramp:
        if (self.low is None) != (self.high is None):
            raise ValueError("give both 'low' and 'high', or neither")
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError("'low' must be below 'high'")
        return self


class Sine(StrictModel):
    """value + amplitude * sin(2 pi t / period + phase)."""

    kind: Literal["sine"]
    amplitude: float
    period: PositiveDuration
    phase: float = Field(default=0.0, description="radians")


class RandomWalk(StrictModel):
    """A seeded walk: every ``interval`` it moves by a uniform step in [-step, step]."""

    kind: Literal["random_walk"]
    step: float = Field(gt=0)
    seed: int = 0
    interval: PositiveDuration = 1.0
    low: float = -math.inf
    high: float = math.inf


class Counter(StrictModel):
    """An integer counting up by ``rate`` per second from the value, wrapping at the type's end."""

    kind: Literal["counter"]
    rate: float = Field(default=1.0, gt=0)


Waveform = Annotated[Constant | Ramp | Sine | RandomWalk | Counter, Field(discriminator="kind")]


class RegisterEntry(StrictModel):
    """One value of the device."""

    name: str = Field(min_length=1)
    table: Table = "holding"
    address: int = Field(ge=0, le=MAX_REGISTER_ADDRESS)
    type: DataType
    byte_order: ByteOrder = "ABCD"
    bit: int | None = Field(default=None, ge=0, le=15, description="bool in a register")
    length: int | None = Field(default=None, ge=1, le=125, description="string registers")
    value: float | int | bool | str = Field(default=0, description="initial value")
    waveform: Waveform | None = None
    writable: bool = Field(
        default=True, description="holding registers and coils only; a bit in a register is not"
    )

    @model_validator(mode="after")
    def _consistent(self) -> RegisterEntry:
        bits = self.table in BIT_TABLES
        if bits and self.type is not DataType.BOOL:
            raise ValueError(f"a {self.table} is a single bit: its type must be bool")
        if self.bit is not None and (bits or self.type is not DataType.BOOL):
            raise ValueError("'bit' is for a bool in a holding or input register")
        if self.type is DataType.BOOL and not bits and self.bit is None:
            raise ValueError("a bool in a register needs 'bit' (0..15)")
        if (self.type is DataType.STRING) != (self.length is not None):
            raise ValueError("a string needs 'length' (registers); other types have none")
        if self.type is DataType.STRING:
            if not isinstance(self.value, str):
                raise ValueError("a string's value is a text")
            if self.waveform is not None:
                raise ValueError("a string has no waveform")
            encode_string(self.value, self.length or 1, self.byte_order)  # fits, byte order
        elif isinstance(self.value, str):
            raise ValueError(f"a {self.type.value} value is a number, not a text")
        else:
            try:
                self.encode(self.value)
            except ValueError as exc:
                raise ValueError(f"value: {exc}") from exc
        if self.waveform is not None and self.type is DataType.BOOL and not isinstance(
            self.waveform, Constant | Counter
        ):
            raise ValueError("a bool's waveform is constant or counter (toggles)")
        if self.address + self.width - 1 > MAX_REGISTER_ADDRESS:
            raise ValueError(f"runs past address {MAX_REGISTER_ADDRESS}")
        return self

    @property
    def width(self) -> int:
        """Registers (or bits) taken."""
        if self.type is DataType.STRING:
            return self.length or 1
        if self.type is DataType.BOOL:
            return 1
        return REGISTER_TYPES[self.type]

    def value_at(self, t: float) -> float | int | bool | str:
        """The value ``t`` seconds after the simulator started."""
        w, v = self.waveform, self.value
        if w is None or isinstance(w, Constant) or isinstance(v, str):
            return v
        base = float(v)
        if isinstance(w, Counter):
            count = math.floor(base + w.rate * t)
            if self.type is DataType.BOOL:
                return count % 2 == 1
            if self.type in INTEGER_RANGES:
                low, high = INTEGER_RANGES[self.type]
                return low + (count - low) % (high - low + 1)
            return float(count)
        if isinstance(w, Ramp):
            x = base + w.rate * t
            if w.low is not None and w.high is not None:
                x = w.low + (x - w.low) % (w.high - w.low)
        elif isinstance(w, Sine):
            x = base + w.amplitude * math.sin(2 * math.pi * t / w.period + w.phase)
        else:
            x = _random_walk(w, base, int(t // w.interval))
        return self._fit(x)

    def _fit(self, x: float) -> float | int:
        """A waveform's value as the register type holds it (integers rounded and clipped)."""
        if self.type in INTEGER_RANGES:
            low, high = INTEGER_RANGES[self.type]
            return int(min(max(round(x), low), high))
        if self.type is DataType.FLOAT32:
            return float(min(max(x, -3.4e38), 3.4e38))
        return x

    def encode(self, value: float | int | bool | str) -> list[int]:
        """The registers of ``value`` (one 0/1 word for a bit)."""
        if self.type is DataType.STRING:
            return encode_string(str(value), self.length or 1, self.byte_order)
        return encode(value, self.type, self.byte_order)  # type: ignore[arg-type]


def _random_walk(w: RandomWalk, start: float, steps: int) -> float:
    rng = random.Random(w.seed)
    x = start
    for _ in range(steps):
        x = min(max(x + rng.uniform(-w.step, w.step), w.low), w.high)
    return x


class Fault(StrictModel):
    """Misbehaviour of every request touching ``table`` addresses ``start``..``end``."""

    table: Table
    start: int = Field(ge=0, le=MAX_REGISTER_ADDRESS)
    end: int | None = Field(default=None, ge=0, le=MAX_REGISTER_ADDRESS,
                            description="last address (default: start)")
    exception: int | None = Field(default=None,
                                  description="answer with this Modbus exception code")
    delay: Duration | None = Field(default=None, description="answer this much later")
    drop_connection: bool = Field(default=False, description="TCP: close the connection")
    garble: bool = Field(default=False, description="RTU: a CRC error; TCP: a short answer")

    @model_validator(mode="after")
    def _one_kind(self) -> Fault:
        kinds = [self.exception is not None, self.delay is not None, self.drop_connection,
                 self.garble]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of exception, delay, drop_connection, garble")
        if self.exception is not None and self.exception not in EXCEPTION_CODES:
            raise ValueError(f"exception {self.exception}: Modbus codes are "
                             f"{', '.join(map(str, EXCEPTION_CODES))}")
        if self.end is not None and self.end < self.start:
            raise ValueError("'end' is before 'start'")
        return self

    @property
    def last(self) -> int:
        return self.start if self.end is None else self.end

    def touches(self, table: str, first: int, count: int) -> bool:
        return table == self.table and first <= self.last and self.start < first + count


class ModbusMap(StrictModel):
    """A generic Modbus device."""

    unit_id: int = Field(default=1, ge=1, le=247)
    registers: list[RegisterEntry] = Field(min_length=1)
    faults: list[Fault] = Field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any], file: str = "<map>") -> ModbusMap:
        """Validate a parsed map (tests) with the cross-checks of :func:`load_map`."""
        problems = _overlaps(data, file, {})
        result = cls.model_validate(data)
        if problems:
            raise ConfigError(problems)
        return result


def _overlaps(data: Any, file: str, lines: dict[Any, int]) -> list[ConfigProblem]:
    """Names are unique; no two values share a register, except bools on distinct bits."""
    problems: list[ConfigProblem] = []
    if not isinstance(data, dict) or not isinstance(data.get("registers"), list):
        return problems
    names: dict[str, int] = {}
    owners: dict[tuple[str, int, int | None], int] = {}
    for i, entry in enumerate(data["registers"]):
        try:
            reg = RegisterEntry.model_validate(entry)
        except Exception:  # reported by the model validation, at its own line
            continue
        path: tuple[str | int, ...] = ("registers", i)
        if reg.name in names:
            problems.append(ConfigProblem(
                file, line_of(lines, (*path, "name")), (*path, "name"),
                f"duplicate name {reg.name!r} (also registers[{names[reg.name]}])"))
        names.setdefault(reg.name, i)
        for address in range(reg.address, reg.address + reg.width):
            if reg.bit is not None:
                keys = [(reg.table, address, reg.bit), (reg.table, address, None)]
                mine = (reg.table, address, reg.bit)
            else:
                keys = [(reg.table, address, None), *((reg.table, address, b) for b in range(16))]
                mine = (reg.table, address, None)
            clash = next((owners[k] for k in keys if k in owners), None)
            if clash is not None:
                problems.append(ConfigProblem(
                    file, line_of(lines, (*path, "address")), (*path, "address"),
                    f"{reg.table} {address} is already taken by registers[{clash}]"))
                break
            owners[mine] = i
    return problems


def load_map(path: str | Path) -> ModbusMap:
    """Read and validate a register map; :class:`ConfigError` names file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), 0, (), f"cannot read: {exc.strerror}")]) \
            from exc
    return validate_yaml_text(ModbusMap, text, str(path), _overlaps)
