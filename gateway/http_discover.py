"""The config API's look at devices before they are configured (admin): a connection test
in the words of ``chenxing-gateway check``, an OPC UA browse and a register scan (where a
driver registers them as ``discovery``: :class:`drivers.registration.DriverRegistration`),
each with the same code as the command-line tool of the same name.

``POST /api/config/test-connection`` ``{device: {...}, timeout?}`` -> ``{ok, reason,
identity, readings, errors}``; ``POST /api/browse`` and ``POST /api/scan`` ``{device:
{...}, ...}`` -> what the driver's discovery answers. A device that does not validate is
422 with ``problems`` (key, message, as ``validate`` words them); a device that cannot be
reached is 502 with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from drivers.registration import DriverRegistration, load_ref
from gateway.access import Role
from gateway.config.plain_errors import plain_errors
from gateway.device_check import check_device
from gateway.errors import ApiRefused, DriverError
from gateway.http_access import read_json_object
from gateway.tags import TagCatalog

if TYPE_CHECKING:
    from gateway.runtime.gateway import Gateway

log = logging.getLogger(__name__)

ROUTE_ROLES: dict[str, Role | None] = dict.fromkeys(
    ("config-test-connection", "browse", "scan"), Role.ADMIN)
#: seconds a connection test may take by default, and at most
DEFAULT_TIMEOUT, MAX_TIMEOUT = 5.0, 30.0
#: a browse or a scan never runs longer than this
DISCOVERY_SECONDS = 60.0
MAX_BODY = 1024 * 1024


class DiscoveryRoutes:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/api/config/test-connection", self.test_connection,
                            name="config-test-connection")
        app.router.add_post("/api/browse", self.browse, name="browse")
        app.router.add_post("/api/scan", self.scan, name="scan")

    async def test_connection(self, request: web.Request) -> web.Response:
        body = await _body(request, {"device", "timeout"})
        timeout = body.get("timeout", DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
                or not 0 < timeout <= MAX_TIMEOUT:
            raise ApiRefused(400, "bad_field", f"'timeout': seconds, above 0 up to "
                                               f"{MAX_TIMEOUT:g}")
        raw, reg = self._device(body)
        device = _validated(reg.config, raw).with_base_dir(self.gateway.live.base_dir)
        gw = self.gateway
        claim = gw.drivers.port_use(device)
        users = gw.serial_ports.users(claim[0]) if claim is not None else []
        if users:  # a second opening of the line would garble the running devices' frames
            raise ApiRefused(409, "port_in_use", f"{claim[0] if claim else ''} is in use by "
                             f"{', '.join(sorted(set(users)))}: the gateway's own reads of "
                             "that line tell (GET /healthz), or stop them first")
        result = await check_device(device, TagCatalog([device]), float(timeout),
                                    gw.serial_ports, gw.drivers, gw.listen_ports)
        return web.json_response(result.as_dict())

    async def browse(self, request: web.Request) -> web.Response:
        return await self._discover(request, "browse", {"start", "depth", "builtin"})

    async def scan(self, request: web.Request) -> web.Response:
        return await self._discover(request, "scan", {"table", "area", "start", "count"})

    async def _discover(self, request: web.Request, what: str, keys: set[str]) -> web.Response:
        body = await _body(request, {"device", *keys})
        raw, reg = self._device(body)
        ref = reg.discovery.get(what)
        if ref is None:
            able = [p for r in self.gateway.drivers.registrations if what in r.discovery
                    for p in r.protocols]
            raise ApiRefused(422, f"no_{what}", f"protocol {raw['protocol']} offers no {what} "
                             f"here (those that do: {', '.join(able) or 'none'})")
        call = load_ref(ref)
        request_keys = {k: v for k, v in body.items() if k != "device"}
        try:
            async with asyncio.timeout(DISCOVERY_SECONDS):
                found = await call(raw, request_keys)
        except ValidationError as exc:
            raise _invalid(reg.config, raw, exc) from None
        except ValueError as exc:
            raise ApiRefused(400, "bad_field", str(exc)) from None
        except TimeoutError:
            raise ApiRefused(504, "timeout", f"no answer within {DISCOVERY_SECONDS:g} s"
                             ) from None
        except (DriverError, OSError) as exc:
            raise ApiRefused(502, "device", f"{what} failed: {exc}") from None
        except Exception as exc:  # a protocol library's own error: a reason, not a traceback
            log.warning("%s of %s failed", what, raw.get("name"), exc_info=True)
            raise ApiRefused(502, "device", f"{what} failed: {exc}") from None
        return web.json_response(found)

    def _device(self, body: Mapping[str, Any]) -> tuple[dict[str, Any], DriverRegistration]:
        raw = body.get("device")
        if not isinstance(raw, dict):
            raise ApiRefused(400, "bad_field", "'device' must be an object (as in the YAML "
                                               "file)")
        reg = self.gateway.drivers.get(raw.get("protocol"))
        if reg is None:
            raise ApiRefused(422, "invalid", f"device.protocol: one of "
                             f"{', '.join(self.gateway.drivers.protocols)}")
        return {"name": "device", **raw}, reg


async def _body(request: web.Request, keys: set[str]) -> dict[str, Any]:
    body = await read_json_object(request, MAX_BODY)
    unknown = sorted(set(body) - keys)
    if unknown:
        raise ApiRefused(400, "bad_field", f"unknown field(s): {', '.join(unknown)[:200]}")
    return body


def _validated(model: type[BaseModel], raw: dict[str, Any]) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(model, raw, exc) from None


def _invalid(model: type[BaseModel], raw: dict[str, Any], exc: ValidationError) -> ApiRefused:
    """The device's problems, keyed as ``validate`` keys them (``device.tags[0].type``)."""
    words = plain_errors(model, raw, exc.errors())
    text = "; ".join(f"{_key(path)}: {message}" for path, message in words)
    return ApiRefused(422, "invalid", text[:2000])


def _key(path: tuple[str | int, ...]) -> str:
    out = "device"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out
