"""The audit log moved to :mod:`gateway.audit` (every part of the gateway writes to it:
commands, writes, firmware updates, logins, user changes, config changes)."""

from gateway.audit.log import AuditLog

__all__ = ["AuditLog"]
