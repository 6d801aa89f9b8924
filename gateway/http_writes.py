"""``POST /api/writes`` (operator): tag writes from the local API.

Body: ``{"writes": [{"tag": "press.setpoint", "value": 72.5}, ...], "id": "optional"}``.
The writes pass the same checks as the brain's commands (writable tags only, type, range,
rate; all or nothing), run one at a time with them and are audited with the user who
asked. Answer: the command result (``status`` accepted, rejected or failed, one outcome
per write) with 200 when accepted, 422 when rejected (nothing written), 502 when a
device failed a write. Writes need ``commands.enabled`` (409 otherwise).
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.access import Role
from gateway.commands.parse import CONTRACT_VERSION, MAX_PAYLOAD_BYTES
from gateway.errors import ApiRefused
from gateway.http_access import principal_of, read_json_object

if TYPE_CHECKING:
    from gateway.runtime.gateway import Gateway

ROUTE_ROLES: dict[str, Role | None] = {"writes": Role.OPERATOR}
_STATUS = {"accepted": 200, "rejected": 422, "failed": 502}


def add_writes_route(app: web.Application, gateway: Gateway) -> None:
    async def writes(request: web.Request) -> web.Response:
        who = principal_of(request)
        body = await read_json_object(request, MAX_PAYLOAD_BYTES)
        executor = gateway.commands
        if executor is None:
            raise ApiRefused(409, "writes_off", "writes are off: set commands.enabled: true "
                             "(and mark the tags writable)")
        unknown = sorted(set(body) - {"writes", "id"})
        if unknown:
            raise ApiRefused(400, "bad_field", f"unknown field(s): {', '.join(unknown)[:200]}")
        command = {"v": CONTRACT_VERSION, "type": "cmd",
                   "id": body.get("id", f"http-{secrets.token_hex(6)}"),
                   "writes": body.get("writes")}
        try:
            payload = json.dumps(command, allow_nan=False).encode()
        except ValueError:  # 1e400 was read as infinity
            raise ApiRefused(400, "bad_value", "a value is beyond what a float64 holds") from None
        result = await executor.execute_local(payload, f"http:{who.via}", who.user)
        answer = {"id": result.id, "status": result.status, "reason": result.reason,
                  "results": [o.as_dict() for o in result.results]}
        return web.json_response(answer, status=_STATUS[result.status])

    app.router.add_post("/api/writes", writes, name="writes")
