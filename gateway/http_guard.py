"""Who the local HTTP API answers: the request's host names and its bearer token.

Both host names of a request are parsed strictly (RFC 7230 ``host[:port]``; a name, a
dotted IPv4 address or an IPv6 literal in brackets, and at most one numeric port): the
``Host`` header and, for an absolute-form target (``GET http://host/path``, which
aiohttp routes by its host), the target's authority. Anything else (userinfo
``a@b``, a path, spaces, two ports, an empty host, another target form) is refused 400.
Without a token the API is bound to loopback and both names must be loopback names or
addresses (403): a browser page whose name was rebound to 127.0.0.1 sends its own name.
With a token, only ``Authorization: Bearer <token>`` is accepted (401 otherwise),
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.config.types import is_loopback

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: a DNS name or dotted IPv4 address: labels of letters, digits, '-' and '_'
_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                   r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?")
_PORT = re.compile(r"[0-9]{1,5}")
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass(frozen=True, slots=True)
class HostPort:
    #: lower-case name, dotted IPv4 address, or IPv6 address without brackets
    host: str
    port: int | None


def parse_host(value: str) -> HostPort:
    """A ``Host`` value (or an absolute URI's authority) as host and port; ValueError
    unless it is exactly ``host[:port]``."""
    if value.startswith("["):
        literal, bracket, rest = value[1:].partition("]")
        if not bracket:
            raise ValueError("an IPv6 literal needs its closing ']'")
        if "%" in literal:
            raise ValueError("no zone id in an IPv6 literal (RFC 3986 has none)")
        host = str(ipaddress.IPv6Address(literal))  # ValueError when it is not one
    else:
        name = value.partition(":")[0]
        if not name or len(name) > 254 or not _NAME.fullmatch(name):
            raise ValueError(f"not a host name or address: {name!r}")
        host, rest = name.lower(), value[len(name):]
    if not rest:
        return HostPort(host, None)
    port_text = rest[1:]
    if rest[0] != ":" or not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise ValueError(f"not a port: {rest!r}")
    return HostPort(host, int(port_text))


def target_authority(target: str) -> str | None:
    """The authority of an absolute-form request target (``http://host:port/path``), None
    for origin-form (``/path``); ValueError for any other form."""
    if target.startswith("/"):
        return None
    scheme = _ABSOLUTE.match(target)
    if scheme is None or scheme.group().lower() != "http://":
        raise ValueError("the request target is neither /path nor http://host/path")
    rest = target[scheme.end():]
    return re.split(r"[/?#]", rest, maxsplit=1)[0]


def bearer_token(values: list[str]) -> bytes | None:
    """The token of exactly one ``Authorization: Bearer <token>`` header, else None."""
    if len(values) != 1:
        return None
    scheme, space, token = values[0].partition(" ")
    token = token.lstrip(" ")
    if scheme.lower() != "bearer" or not space or not token:
        return None
    return token.encode("utf-8", "surrogateescape")  # aiohttp keeps undecodable bytes so


def request_hosts(request: web.Request) -> list[HostPort]:
    """The hosts a request names: its ``Host`` header(s) and an absolute-form target's
    authority; ValueError when one is malformed."""
    names = request.headers.getall("Host", [])
    authority = target_authority(request.raw_path)
    if authority is not None:
        names.append(authority)
    return [parse_host(name) for name in names]


class RequestGuard:
    """The local API's middleware: host names, then the token (``token`` None: loopback
    names only, no token). Routes in ``public`` need no token (the status page's shell)."""

    def __init__(self, token: str | None, public: Collection[str] = ()) -> None:
        self._digest = None if token is None else hashlib.sha256(token.encode()).digest()
        self._public = public

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            hosts = request_hosts(request)
        except ValueError as exc:
            return _refuse(400, f"malformed request host: {exc}")
        if self._digest is None:
            if not all(is_loopback(h.host) for h in hosts):
                # no token means a loopback bind: a foreign name is a DNS-rebinding page
                return _refuse(403, "the local API answers to loopback host names only "
                                    "(set http.token to serve others)")
        elif request.match_info.route.name not in self._public:
            given = bearer_token(request.headers.getall("Authorization", []))
            # digests: the comparison takes the same time whatever the given length
            if given is None or not hmac.compare_digest(hashlib.sha256(given).digest(),
                                                        self._digest):
                return _refuse(401, "missing or wrong bearer token "
                                    "(send 'Authorization: Bearer <token>')")
        return await handler(request)


def _refuse(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


class ProtocolErrorLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server log, where a request it cannot parse (no Host, two Hosts, a bad
    request line) is one warning line, not an error with a traceback per request."""

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kw: Any) -> None:
        from aiohttp.http_exceptions import HttpProcessingError

        if isinstance(exc_info, HttpProcessingError):
            reason = str(exc_info.message).strip() or type(exc_info).__name__
            self.warning("%s: %s %r", str(msg) % args, exc_info.code, reason)  # r: one line
            return
        super().exception(msg, *args, exc_info=exc_info, **kw)
