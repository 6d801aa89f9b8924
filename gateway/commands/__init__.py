"""Commands from the brain: allow-listed, range- and rate-checked, audited writes; firmware
updates, config bundles and model packages.

- :mod:`gateway.commands.parse`: the ``cmd`` payload
- :mod:`gateway.commands.validate`: checks against the tag config, engineering -> raw
- :mod:`gateway.commands.ratelimit`: per-tag write rate
- :mod:`gateway.commands.readback`: read-back verification
- :mod:`gateway.commands.audit`: the append-only audit log
- :mod:`gateway.commands.executor`: runs them, in order, and answers
- :mod:`gateway.commands.firmware`: ``firmware_update`` (MCU nodes' images)
- :mod:`gateway.commands.deploy`: ``config/apply`` and ``model/deploy`` read into a request
  (the runtime applies them: :mod:`gateway.runtime.brain_deploy`)
"""

from gateway.commands.audit import AuditLog
from gateway.commands.executor import CommandExecutor
from gateway.commands.parse import Command, WriteRequest, parse_command
from gateway.commands.result import CommandResult, WriteOutcome
from gateway.errors import MalformedCommand

__all__ = [
    "AuditLog",
    "Command",
    "CommandExecutor",
    "CommandResult",
    "MalformedCommand",
    "WriteOutcome",
    "WriteRequest",
    "parse_command",
]
