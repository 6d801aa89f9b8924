"""``chenxing-gateway firmware upload --device NAME IMAGE``: update an MCU node over MCUmgr SMP.

While the gateway runs it owns the node's serial port: the command sends the
image to the running gateway's local API (``POST /api/firmware/{device}``, bearer
token from ``http.token``) and shows the progress it streams back. When no
gateway answers on the configured ``http`` address, the command opens the serial
port itself. ``--via`` forces one way.

IMAGE may be a signed bundle (``chenxing-gateway bundle sign --kind firmware``): the
running gateway verifies it, or, on the port, this command does, against the config's
``bundles`` block, auditing to the gateway's audit log and recording the version in
its state directory as the gateway would. With ``bundles.require_signed`` a raw image
is refused either way.

Exit codes: 0 updated (or already running the image), 1 bad config or image,
3 the update failed, 6 the node rolled back to its old image.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from drivers.registry import REGISTRY
from gateway import exit_codes
from gateway.bundles import AppliedVersions, BundleVerifier, looks_like_bundle
from gateway.bundles.firmware import unwrap_firmware
from gateway.cli.config_option import config_option
from gateway.commands.audit import AuditLog
from gateway.config.loader import load_config
from gateway.config.models import GatewayConfig
from gateway.config.secrets import resolve_secret
from gateway.errors import (
    BundleRefused,
    ConfigError,
    DeviceUnreachable,
    FirmwareUpdateError,
    ImageRefused,
)

if TYPE_CHECKING:
    from drivers.firmware import CheckedImage, FirmwareProgress, FirmwareUpdates
    from gateway.config.device import DeviceConfig

ROLLED_BACK = exit_codes.ROLLED_BACK
PROBE_TIMEOUT = 1.0


class _Failed(click.ClickException):
    """The update did not happen; ``code`` is the command's exit code (a CLI exit, not one
    of the gateway's errors: :mod:`gateway.errors`)."""

    def __init__(self, message: str, code: int = exit_codes.RUNTIME_FAILURE) -> None:
        super().__init__(message)
        self.code = code


@click.group()
def firmware() -> None:
    """Firmware of MCU sensor nodes (MCUmgr SMP over the node's serial link)."""


@firmware.command("upload")
@click.option("--device", required=True, help="the mcu_node device to update")
@config_option()
@click.option("--sha256", default=None, help="refuse the image unless its SHA-256 is this (hex)")
@click.option("--via", type=click.Choice(["auto", "gateway", "port"]), default="auto",
              show_default=True,
              help="gateway: through the running gateway; port: open the serial port directly")
@click.argument("image", type=click.Path(dir_okay=False, exists=True))
def upload(device: str, config_path: str, sha256: str | None, via: str, image: str) -> None:
    """Upload IMAGE (an MCUboot image) to the node, test it, reset, confirm."""
    console = Console(stderr=True)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exit_codes.CONFIG_INVALID)
    data = Path(image).read_bytes()
    try:
        result = asyncio.run(_upload(config, Path(config_path).resolve().parent, device, data,
                                     sha256, via, console))
    except _Failed as exc:
        click.echo(f"firmware upload failed: {exc.message}", err=True)
        sys.exit(exc.code)
    outcome = result.get("outcome")
    summary = (f"{device}: {outcome}: running {result.get('running_version')} "
               f"(was {result.get('old_version')})")
    if result.get("detail"):
        summary += f"; {result['detail']}"
    click.echo(summary)
    sys.exit(ROLLED_BACK if outcome == "rolled_back" else exit_codes.OK)


async def _upload(config: GatewayConfig, config_dir: Path, device: str, data: bytes,
                  sha256: str | None, via: str, console: Console) -> dict[str, Any]:
    node = next((d for d in config.devices if d.name == device), None)
    updates = REGISTRY.firmware_of(node) if node is not None else None
    if node is None or updates is None:
        kinds = "/".join(REGISTRY.firmware_protocols()) or "firmware"
        names = [d.name for d in config.devices if REGISTRY.firmware_of(d) is not None]
        raise _Failed(f"no {kinds} device {device!r} in the config (devices that take "
                      f"firmware updates: {', '.join(names) or 'none'})",
                      exit_codes.CONFIG_INVALID)
    if sha256 and hashlib.sha256(data).hexdigest() != sha256.lower():
        raise _Failed(f"SHA-256 of {'the bundle' if looks_like_bundle(data) else 'the image'} "
                      f"is {hashlib.sha256(data).hexdigest()}, expected {sha256.lower()}",
                      exit_codes.CONFIG_INVALID)
    url = _api_url(config)
    token = resolve_secret(config.http.token, config_dir) if config.http.token else None
    if via == "gateway" or (via == "auto" and url and await _gateway_answers(url, token)):
        if not url:
            raise _Failed("the config's local API is disabled or on a random port (http.port 0)")
        label = await _label(updates, data)
        console.print(f"updating {device} to {label} through the running gateway")
        with ProgressBar(console, len(data)) as advance:
            return await _through_gateway(url, token, device, data, sha256, advance)
    source = f"cli firmware upload {device}"
    state_dir = config.gateway.state_dir
    # the audit log is opened only when a bundle is checked (or a raw image refused)
    audited = looks_like_bundle(data) or config.bundles.require_signed
    audit = AuditLog(config.commands.resolved_audit_log(state_dir)) if audited else None
    verifier = BundleVerifier(config.bundles.trust(), AppliedVersions(state_dir), audit)
    try:
        try:
            raw, bundle = await asyncio.to_thread(unwrap_firmware, verifier, data,
                                                  device=device, updates=updates, source=source)
            image = await asyncio.to_thread(updates.check_image, raw)
        except BundleRefused as exc:
            raise _Failed(f"refused ({exc.reason}): {exc.detail}",
                          exit_codes.CONFIG_INVALID) from None
        except ImageRefused as exc:
            raise _Failed(str(exc), exit_codes.CONFIG_INVALID) from None
        signed = f" (signed bundle, key {bundle.key_id})" if bundle is not None else ""
        console.print(f"updating {device} to {image.version_text}{signed} on {node.address} "
                      "(no gateway running)")
        with ProgressBar(console, image.size) as advance:
            result = await _through_port(updates, node, image, advance)
        if bundle is not None and result.get("outcome") != "rolled_back":
            verifier.applied(bundle, source)
        return result
    finally:
        if audit is not None:
            audit.close()


async def _label(updates: FirmwareUpdates, data: bytes) -> str:
    """What the progress line names: the image's version, or "a signed bundle" (the
    gateway verifies it)."""
    if looks_like_bundle(data):
        return "the image in a signed bundle"
    try:
        return (await asyncio.to_thread(updates.check_image, data)).version_text
    except ImageRefused as exc:
        raise _Failed(str(exc), exit_codes.CONFIG_INVALID) from None


def _api_url(config: GatewayConfig) -> str | None:
    http = config.http
    if not http.enabled or http.port == 0:
        return None
    host = "127.0.0.1" if http.bind in ("0.0.0.0", "") else http.bind
    host = "[::1]" if host == "::" else (f"[{host}]" if ":" in host else host)
    return f"http://{host}:{http.port}"


async def _gateway_answers(url: str, token: str | None) -> bool:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT)) as s, \
                s.get(f"{url}/healthz", headers=_auth(token)) as resp:
            return resp.status in (200, 503)
    except (aiohttp.ClientError, TimeoutError, OSError):
        return False


async def _through_gateway(url: str, token: str | None, device: str, data: bytes,
                           sha256: str | None, advance: Callable[[dict[str, Any]], None],
                           ) -> dict[str, Any]:
    from gateway.errors import FirmwareApiError
    from gateway.http_firmware import update_through_gateway

    try:
        return await update_through_gateway(url, device, data, token=token, sha256=sha256,
                                            progress=advance)
    except FirmwareApiError as exc:
        bad_request = exc.status in (400, 403, 404, 413)  # 403: a refused bundle
        raise _Failed(str(exc), exit_codes.CONFIG_INVALID if bad_request
                      else exit_codes.RUNTIME_FAILURE) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise _Failed(f"cannot reach the gateway at {url}: {exc}") from None


async def _through_port(updates: FirmwareUpdates, node: DeviceConfig, image: CheckedImage,
                        advance: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """No gateway runs: open the device's port in a session of its own."""
    def on_progress(p: FirmwareProgress) -> None:
        advance({"phase": str(p.phase), "done": p.done, "total": p.total, "detail": p.detail})

    try:
        async with updates.session(node) as driver:
            result = await updates.update(driver, image, progress=on_progress)
    except DeviceUnreachable as exc:
        raise _Failed(f"cannot reach the node: {exc}") from None
    except FirmwareUpdateError as exc:
        raise _Failed(str(exc)) from None
    return result.as_dict()


class ProgressBar:
    """A rich progress bar fed with progress events (dicts with phase, done, total, detail)."""

    def __init__(self, console: Console, total: int) -> None:
        self._progress = Progress(
            TextColumn("{task.fields[phase]:>8}"), BarColumn(), DownloadColumn(),
            TransferSpeedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[detail]}"),
            console=console, transient=False,
        )
        self._task = self._progress.add_task("firmware", total=total, phase="check", detail="")

    def __enter__(self) -> Callable[[dict[str, Any]], None]:
        self._progress.start()
        return self._advance

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _advance(self, event: dict[str, Any]) -> None:
        self._progress.update(self._task, completed=int(event.get("done", 0)),
                              total=int(event.get("total", 0)) or None,
                              phase=str(event.get("phase", "")),
                              detail=str(event.get("detail", "")))


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}
