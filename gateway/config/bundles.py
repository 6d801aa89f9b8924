"""The ``bundles`` block: the public keys the gateway trusts and which may sign what.

::

    bundles:
      require_signed: true            # raw firmware images are refused too
      keys:
        brain-release:
          public_key: 3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=   # or a PEM block
          description: the brain's release key, 2025
      signers:                        # per kind, the keys that may sign it
        firmware: [brain-release]
        model: [brain-release, algo-team]
        config: [brain-release]

A key that does not parse is reported at its ``public_key`` line; a signer naming a key
that is not in ``keys`` at its own line (:func:`bundle_problems`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from gateway.bundles import Trust
from gateway.bundles.keys import load_public_key, raw_public_bytes
from gateway.bundles.verify import DEFAULT_MAX_BYTES
from gateway.config.types import ByteSize, Name, StrictModel
from gateway.config.yaml_model import line_of
from gateway.config.yaml_reader import KeyPath
from gateway.errors import ConfigProblem

BundleKind = Literal["config", "model", "firmware"]


class TrustedKey(StrictModel):
    """One public key the gateway trusts."""

    public_key: str = Field(
        description="Ed25519 public key: base64 of its 32 bytes (what `chenxing-gateway bundle "
        "keygen` prints), base64 of its DER, a PEM block (BEGIN PUBLIC KEY) or an OpenSSH "
        "line (ssh-ed25519 ...)",
    )
    description: str = ""

    @field_validator("public_key")
    @classmethod
    def _parses(cls, value: str) -> str:
        load_public_key(value)  # ValueError says why
        return value.strip()


class BundlesConfig(StrictModel):
    """Signed bundles (config, model packages, MCU firmware) and the keys trusted to sign them
    (docs/bundles.md)."""

    require_signed: bool = Field(
        default=False,
        description="refuse raw payloads where a signed bundle could come instead (firmware "
        "images through the local API, the brain's firmware_update command and the CLI); "
        "bundles are always verified, whatever this says",
    )
    keys: dict[Name, TrustedKey] = Field(
        default_factory=dict, description="trusted public keys by key id (the id a bundle's "
        "manifest.sig names)")
    signers: dict[BundleKind, list[Name]] = Field(
        default_factory=dict, description="per kind (config, model, firmware), the ids of the "
        "keys that may sign it; a kind not listed is refused whoever signed it")
    max_bytes: ByteSize = Field(default=DEFAULT_MAX_BYTES, description="largest bundle accepted")

    def trust(self) -> Trust:
        return Trust(
            keys={key_id: load_public_key(k.public_key) for key_id, k in self.keys.items()},
            signers={kind: frozenset(ids) for kind, ids in self.signers.items()},
            require_signed=self.require_signed, max_bytes=self.max_bytes)


def bundle_problems(data: dict[str, Any], file: str,
                    lines: dict[KeyPath, int]) -> list[ConfigProblem]:
    """Signers that name no key of ``keys``; one key under two ids; signatures required
    with no key to sign."""
    block = data.get("bundles")
    if not isinstance(block, dict):
        return []
    problems: list[ConfigProblem] = []
    found = block.get("keys")
    keys: dict[str, Any] = found if isinstance(found, dict) else {}
    signers = block.get("signers")
    for kind, ids in (signers.items() if isinstance(signers, dict) else ()):
        for i, key_id in enumerate(ids if isinstance(ids, list) else ()):
            if isinstance(key_id, str) and key_id not in keys:
                path: KeyPath = ("bundles", "signers", kind, i)
                problems.append(ConfigProblem(
                    file, line_of(lines, path), path,
                    f"no key {key_id!r} in bundles.keys (keys: {', '.join(keys) or 'none'})"))
    seen: dict[bytes, str] = {}
    for key_id, entry in keys.items():
        text = entry.get("public_key") if isinstance(entry, dict) else None
        try:
            raw = raw_public_bytes(load_public_key(text)) if isinstance(text, str) else None
        except ValueError:
            continue  # reported by the field's own check
        if raw is None:
            continue
        if raw in seen:
            path = ("bundles", "keys", key_id, "public_key")
            problems.append(ConfigProblem(file, line_of(lines, path), path,
                                          f"the same public key as {seen[raw]!r}: one key, "
                                          "one id"))
        else:
            seen[raw] = key_id
    if block.get("require_signed") is True and not keys:
        path = ("bundles", "require_signed")
        problems.append(ConfigProblem(file, line_of(lines, path), path,
                                      "signatures are required but no key is trusted: every "
                                      "bundle and every firmware image would be refused; add "
                                      "bundles.keys and bundles.signers"))
    return problems
