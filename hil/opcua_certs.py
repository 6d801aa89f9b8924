"""Self-signed OPC UA application certificates for simulators and tests (nothing downloaded).

The code lives in :mod:`drivers.opcua.certificates`, shared with ``chenxing-gateway certs``.
"""

from __future__ import annotations

from drivers.opcua.certificates import make_app_certificate

__all__ = ["make_app_certificate"]
