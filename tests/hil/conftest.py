"""Shared helpers for the HIL tests."""

from __future__ import annotations

import sys
from pathlib import Path

# The project is not installed into the venv; make `import hil` work under plain `pytest`.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
