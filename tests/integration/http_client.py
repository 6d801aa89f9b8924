"""One request to a gateway's local API, as the HTTP tests make it: an optional bearer
token, a JSON or raw body, the answer decoded as JSON when it is JSON."""

from __future__ import annotations

import json
from typing import Any

import aiohttp


async def api_call(session: aiohttp.ClientSession, method: str, url: str,
                   token: str | None = None, body: Any = None, data: bytes | None = None,
                   headers: dict[str, str] | None = None,
                   as_bytes: bool = False) -> tuple[int, Any]:  # fmt: skip
    """(status, the JSON answer or else its text, or its bytes with ``as_bytes``)."""
    hdrs = dict(headers or {})
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    kw: dict[str, Any] = {"headers": hdrs}
    if body is not None:
        kw["json"] = body
    elif data is not None:
        kw["data"] = data
    async with session.request(method, url, **kw) as resp:
        text = await resp.read()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text if as_bytes else text.decode("utf-8", "replace")
