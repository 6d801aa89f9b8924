"""The gateway's exception hierarchy, in one place."""

from __future__ import annotations

from dataclasses import dataclass


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a config file: where it is and what is wrong."""

    file: str
    line: int
    path: tuple[str | int, ...]
    message: str

    @property
    def path_text(self) -> str:
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text or "(top level)"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path_text}: {self.message}"


class ConfigError(GatewayError):
    """The configuration is invalid; carries every problem found, not only the first."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        count = len(problems)
        header = f"{count} configuration error{'s' if count != 1 else ''}"
        super().__init__(header + ":\n" + "\n".join(f"  {p}" for p in problems))


class DriverError(GatewayError):
    """Base of southbound driver errors."""


class DeviceUnreachable(DriverError):
    """The device cannot be reached (refused, timeout, DNS): reconnect with backoff."""


class ConnectionLost(DriverError):
    """An established connection to the device broke: reconnect with backoff."""


class WriteRejected(DriverError):
    """A write was refused: tag not writable, value out of range, or the device said no."""
