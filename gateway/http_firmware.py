"""``POST /api/firmware/{device}``: run a firmware update through the running gateway.

While the gateway runs it owns the node's serial port, so ``chenxing-gateway
firmware upload`` hands the image to it here. Request body: the image file's
bytes; query ``sha256`` (optional): refuse unless the image hashes to it. The
answer streams one JSON object per line (``application/x-ndjson``)::

    {"progress": {"phase": "upload", "done": 4096, "total": 262144, "detail": ""}}
    ...
    {"result": {"outcome": "updated", "running_version": "1.4.2", ...}}   # or
    {"error": "the node did not come back within 15 s of the reset"}

The body may be a signed bundle holding the image (``docs/bundles.md``): it is verified
against the config's ``bundles`` block before anything else (refusals answered 400
malformed or mismatched, 403 unsigned, unknown key, bad signature, key not allowed, 409
a version not newer than the device's last from a bundle; ``{"error": ..., "reason":
"bad_signature"}``, and audited), and its version recorded once the node runs it. With
``bundles.require_signed`` a raw image is refused (403, ``unsigned``). ``sha256`` is the
SHA-256 of the body as sent, the bundle's for a bundle.

The device's driver reaches the update through its registration's firmware capability
(:mod:`drivers.firmware`; MCU nodes: MCUboot images over SMP). Bad requests (unknown
device, a device whose driver takes no firmware updates, device down, image too big,
not an MCUboot image, hash mismatch) are answered 4xx with ``{"error": ...}`` before any
byte goes to the node; a ``Content-Length`` over 16 MiB before the body is read, a
body without one once it passes 16 MiB (it is streamed to a temporary file in the
state dir, never held in memory until complete). The local API's bearer token guards
this like every route.

:func:`update_through_gateway` is the client side (the CLI, HIL scenarios).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from drivers.firmware import ROLLED_BACK
from gateway.bundles import BundleVerifier, VerifiedBundle
from gateway.bundles.firmware import unwrap_firmware
from gateway.errors import BundleRefused, FirmwareApiError, FirmwareUpdateError, ImageRefused
from gateway.http_access import PRINCIPAL_KEY

if TYPE_CHECKING:
    from drivers.firmware import FirmwareProgress
    from gateway.runtime.gateway import Gateway

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 16 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
CONTENT_TYPE = "application/x-ndjson"
#: the HTTP status of a refused bundle, by reason (other reasons: 400)
BUNDLE_STATUS = {"unsigned": 403, "unknown_key": 403, "bad_signature": 403,
                 "key_not_allowed": 403, "stale_version": 409, "state_unreadable": 500}


def add_firmware_route(app: web.Application, gateway: Gateway) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await firmware_upload(gateway, request)

    app.router.add_post("/api/firmware/{device}", handler, name="firmware-upload")


async def firmware_upload(gateway: Gateway, request: web.Request) -> web.StreamResponse:
    """The route. Refusals, the start and the outcome are audited (``firmware`` lines with
    the user who asked; the outcome when the update ends, even if the client left)."""
    device = request.match_info["device"]
    principal = request.get(PRINCIPAL_KEY)
    who = principal.audit_fields() if principal is not None else {}
    update_id = f"http-{secrets.token_hex(6)}"  # the brain's lines carry its command id

    def audit(**fields: Any) -> None:
        gateway.audit.record("firmware", id=update_id, topic="http", device=device[:64], **who,
                             **fields)

    def refuse(status: int, reason: str) -> web.Response:
        audit(outcome="rejected", reason=reason)
        return _error(status, reason)

    if request.content_length is not None and request.content_length > MAX_IMAGE_BYTES:
        return refuse(413, _TOO_LARGE)  # before a byte of the body is read
    runner = gateway.runners.get(device)
    config = next((d for d in gateway.config.devices if d.name == device), None)
    if runner is None or config is None:
        return refuse(404, f"no device {device!r}")
    # the capability (the device's registration names it) may import its libraries the
    # first time, as check_image below does (smpclient and its pydantic models: ~0.3 s of
    # CPU): in a thread, so the gateway's loop keeps polling the other devices meanwhile
    updates = await asyncio.to_thread(gateway.drivers.firmware_of, config)
    if updates is None:
        takers = ", ".join(gateway.drivers.firmware_protocols()) or "none"
        return refuse(400, f"{device} takes no firmware updates (protocol {config.protocol}; "
                      f"protocols that do: {takers})")
    driver = runner.driver
    if driver is None:
        return refuse(409, f"{device} is not up")
    reason = updates.unavailable(driver)
    if reason is not None:
        return refuse(409, reason)
    body = await receive_image(request, gateway.config.gateway.state_dir)
    if body is None:
        return refuse(413, _TOO_LARGE)
    expected = request.query.get("sha256")
    if expected and hashlib.sha256(body).hexdigest() != expected.lower():
        return refuse(400, f"SHA-256 of the body is {hashlib.sha256(body).hexdigest()}, "
                      f"expected {expected.lower()}")
    source = f"http POST /api/firmware/{device}"
    verifier = gateway.bundle_verifier()
    try:
        image, bundle = await asyncio.to_thread(unwrap_firmware, verifier, body, device=device,
                                                updates=updates, source=source)
        checked = await asyncio.to_thread(updates.check_image, image)
    except BundleRefused as exc:  # the verifier audited the bundle; this, the request
        audit(outcome="rejected", reason=f"bundle refused ({exc.reason})")
        return web.json_response({"error": f"refused ({exc.reason}): {exc.detail}",
                                  "reason": exc.reason},
                                 status=BUNDLE_STATUS.get(exc.reason, 400))
    except ImageRefused as exc:
        return refuse(400, str(exc))
    if updates.running(driver):
        return refuse(409, f"{device}: a firmware update is already running")

    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
    await response.prepare(request)
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def on_progress(p: FirmwareProgress) -> None:
        events.put_nowait({"progress": {"phase": str(p.phase), "done": p.done, "total": p.total,
                                        "detail": p.detail}})

    log.info("%s: firmware update to %s requested over the local API", device,
             checked.version_text)
    task = asyncio.create_task(updates.update(driver, checked, progress=on_progress))
    digest = await asyncio.to_thread(lambda: hashlib.sha256(image).hexdigest())
    audit(outcome="started", version=checked.version_text, sha256=digest, size=checked.size)

    def audit_outcome(done: asyncio.Task[Any]) -> None:
        if done.cancelled():
            audit(outcome="failed", reason="cancelled (the gateway stopped)")
        elif (exc := done.exception()) is not None:
            audit(outcome="failed", reason=str(exc) or type(exc).__name__)
        else:
            result = done.result().as_dict()  # the same fields as the brain's updates
            result.pop("device", None)
            audit(**{"outcome": str(result.pop("outcome", "?")), **result})

    task.add_done_callback(audit_outcome)
    try:
        while not task.done() or not events.empty():
            getter = asyncio.ensure_future(events.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                await _send(response, getter.result())
            else:
                getter.cancel()
        try:
            result = task.result()
            final: dict[str, Any] = {"result": result.as_dict()}
            if bundle is not None and result.outcome != ROLLED_BACK:
                await asyncio.to_thread(_record_applied, verifier, bundle, source)
        except FirmwareUpdateError as exc:
            final = {"error": str(exc)}
        except Exception as exc:  # a bug: the client still gets an answer, the log the trace
            log.exception("%s: the firmware update crashed", device)
            final = {"error": f"internal error: {type(exc).__name__}: {exc}"}
        await _send(response, final)
    except (ConnectionResetError, asyncio.CancelledError):
        # the CLI went away: the update goes on (stopping mid-way helps nobody)
        log.warning("%s: the firmware client disconnected; the update continues", device)
        raise
    await response.write_eof()
    return response


def _record_applied(verifier: BundleVerifier, bundle: VerifiedBundle, source: str) -> None:
    try:
        verifier.applied(bundle, source)
    except (OSError, BundleRefused) as exc:  # the node runs it; only the record is missing
        log.error("%s applied, but its version was not recorded: %s", bundle.describe(), exc)


async def receive_image(request: web.Request, folder: Path) -> bytes | None:
    """The request body, or None past :data:`MAX_IMAGE_BYTES`. It goes chunk by chunk to an
    unnamed temporary file in ``folder`` (the state dir) and is read back whole only when
    complete: a refused body never sits in memory (a 16 MiB buffer grown in steps left
    the process's heap 24.5 MB larger after a few 40 MiB uploads)."""
    spool = await asyncio.to_thread(_spool_file, folder)
    try:
        size = 0
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            size += len(chunk)
            if size > MAX_IMAGE_BYTES:
                return None
            await asyncio.to_thread(spool.write, chunk)
        await asyncio.to_thread(spool.seek, 0)
        return await asyncio.to_thread(spool.read)
    finally:
        spool.close()


def _spool_file(folder: Path) -> IO[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryFile(dir=folder, prefix="firmware-upload-")


async def _send(response: web.StreamResponse, event: dict[str, Any]) -> None:
    await response.write(json.dumps(event).encode() + b"\n")


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


_TOO_LARGE = f"image larger than {MAX_IMAGE_BYTES} bytes"


async def update_through_gateway(
    url: str, device: str, image: bytes, *, token: str | None = None,
    sha256: str | None = None, progress: Callable[[dict[str, Any]], None] | None = None,
    read_timeout: float = 120.0,
) -> dict[str, Any]:
    """Ask the gateway at ``url`` (``http://127.0.0.1:8321``) to update ``device``.

    ``progress`` gets each progress event (phase, done, total, detail). Return the
    result (``outcome``: updated, rolled_back, already_running; versions; sha256; ...);
    raise :class:`FirmwareApiError` when the gateway refuses or the update fails.
    """
    params = {"sha256": sha256} if sha256 else {}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=read_timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
            f"{url}/api/firmware/{device}", data=image, params=params, headers=headers) as resp:
        if resp.status != 200:
            try:
                reason = (await resp.json()).get("error", resp.reason)
            except (aiohttp.ContentTypeError, ValueError):
                reason = resp.reason
            raise FirmwareApiError(f"the gateway refused: {reason} (HTTP {resp.status})",
                                   resp.status)
        async for line in resp.content:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                raise FirmwareApiError(f"the gateway sent a line that is not JSON: {line[:80]!r}",
                                       200) from None
            if not isinstance(event, dict):
                raise FirmwareApiError(f"the gateway sent an unexpected line: {line[:80]!r}", 200)
            if "progress" in event:
                if progress is not None:
                    progress(event["progress"])
            elif "result" in event:
                result = event["result"]
                if not isinstance(result, dict):
                    raise FirmwareApiError(
                        f"the gateway sent a result that is no object: {line[:80]!r}", 200)
                return result
            elif "error" in event:
                raise FirmwareApiError(str(event["error"]), 200)
    raise FirmwareApiError("the gateway closed the connection before the update ended", 200)
