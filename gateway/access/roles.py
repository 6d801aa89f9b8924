"""The local API's three roles, each allowed what the one below it is and more.

- ``viewer``: read: the status page, health, metrics, tag values
- ``operator``: also change the process: tag writes, MCU firmware updates
- ``admin``: also change the gateway: its config, its users; read the audit trail
"""

from __future__ import annotations

import enum


class Role(enum.IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def named(cls, name: str) -> Role:
        """The role called ``name`` (ValueError naming the three otherwise)."""
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"no role {name!r} (viewer, operator or admin)") from None

    @property
    def label(self) -> str:
        return self.name.lower()

    def allows(self, needed: Role) -> bool:
        return self >= needed


ROLE_NAMES = tuple(role.label for role in Role)
