"""Secrets a config names by environment variable or file, read when they are needed.

Its own module, below the config loader, so that a driver (OPC UA's key password)
reads a secret without importing the loader and, through it, every driver.
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.config.types import SecretRef
from gateway.errors import ConfigError, ConfigProblem


def resolve_secret(ref: SecretRef, base_dir: Path | None = None) -> str:
    """Read a secret from its environment variable or file; raise ConfigError when absent."""
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value is None:
            raise ConfigError(
                [
                    ConfigProblem(
                        "<environment>", 0, (), f"environment variable {ref.env} is not set"
                    )
                ]
            )
        return value
    assert ref.file is not None
    path = ref.file if ref.file.is_absolute() or base_dir is None else base_dir / ref.file
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(str(path), 0, (), f"cannot read secret file: {exc.strerror}")]
        ) from exc
