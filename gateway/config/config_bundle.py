"""A config bundle's payload: one gateway config file, for this gateway.

The payload check of kind ``config`` (:data:`gateway.bundles.PayloadCheck`): the bundle
holds exactly one ``.yaml`` file; it validates as a gateway config (every problem with
file, line and key, as ``validate`` prints them); its ``gateway.id`` is the bundle's
name, so a config signed for one gateway is refused by every other.
"""

from __future__ import annotations

from pathlib import Path

from drivers.registration import DriverRegistry
from drivers.registry import REGISTRY
from gateway.bundles import PayloadCheck, VerifiedBundle
from gateway.config.loader import load_config_text
from gateway.config.models import GatewayConfig
from gateway.errors import BundleRefused, ConfigError


def config_of(bundle: VerifiedBundle, base_dir: Path | None = None,
              drivers: DriverRegistry = REGISTRY) -> GatewayConfig:
    """The gateway config a ``config`` bundle carries; :class:`BundleRefused`
    (``payload_mismatch``) when it holds anything else or the config is invalid."""
    yaml_files = [n for n in bundle.files if n.endswith((".yaml", ".yml"))]
    if len(yaml_files) != 1 or len(bundle.files) != 1:
        raise BundleRefused("payload_mismatch", "a config bundle holds exactly one .yaml "
                            f"file; this one has {', '.join(sorted(bundle.files))}")
    name = yaml_files[0]
    try:
        text = bundle.files[name].decode("utf-8")
        return load_config_text(text, f"{bundle.name} {bundle.version}:{name}", base_dir,
                                drivers)
    except UnicodeDecodeError as exc:
        raise BundleRefused("payload_mismatch", f"{name}: not UTF-8 text: {exc}") from None
    except ConfigError as exc:
        raise BundleRefused("payload_mismatch", f"the bundle's config is invalid: {exc}") from None


def config_check(gateway_id: str, base_dir: Path | None = None,
                 drivers: DriverRegistry = REGISTRY) -> PayloadCheck:
    """The payload check of config bundles for the gateway ``gateway_id``."""
    def check(bundle: VerifiedBundle) -> None:
        if bundle.name != gateway_id:
            raise BundleRefused("payload_mismatch", f"a config for gateway {bundle.name!r}; "
                                f"this is {gateway_id!r}")
        config = config_of(bundle, base_dir, drivers)
        if config.gateway.id != gateway_id:
            raise BundleRefused("payload_mismatch", f"the bundle is named {bundle.name!r} but "
                                f"its config's gateway.id is {config.gateway.id!r}")
    return check
