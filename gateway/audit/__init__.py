"""The gateway's audit trail: one append-only JSON-lines file, rotated by size.

- :mod:`gateway.audit.log`: :class:`AuditLog`, the writer (one line per event, fsync'd)
- :mod:`gateway.audit.reader`: :func:`read_audit`, newest first, filtered and paged
- :mod:`gateway.audit.values`: :func:`json_safe`, values as JSON can carry them
- :mod:`gateway.audit.events`: the config-change, rollback and deployment lines

Who writes what (the ``event`` of a line): ``cmd`` and ``write`` (commands from the
brain and writes from the local API), ``firmware`` (updates from the brain and the API),
``rebirth``, ``login``, ``logout``, ``denied`` (a request refused for its role),
``user`` (user changes from the CLI or the API), ``config`` (a config change with its
diff), ``rollback`` and ``deploy`` (:mod:`gateway.audit.events`).
"""

from gateway.audit.events import record_config_change, record_deployment, record_rollback
from gateway.audit.log import AuditLog
from gateway.audit.reader import AuditPage, AuditQuery, read_audit
from gateway.audit.values import json_safe

__all__ = [
    "AuditLog",
    "AuditPage",
    "AuditQuery",
    "json_safe",
    "read_audit",
    "record_config_change",
    "record_deployment",
    "record_rollback",
]
