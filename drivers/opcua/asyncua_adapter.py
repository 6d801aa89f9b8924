"""asyncua behind one module: the only place the project reaches asyncua's client.

What the OPC UA driver (and ``chenxing-gateway browse``) get from here, in the project's
errors (:mod:`gateway.errors`):

- :data:`ua`: asyncua's OPC UA data model (NodeId, DataValue, Variant, StatusCodes, the
  service parameters), re-exported: the driver and convert.py build and read OPC UA
  structures with it. These are the protocol's types, not asyncua's machinery;
- :class:`UaClient`: one asyncua ``Client`` and the service calls the driver makes
  (connect with its security, session resumption, read, write, browse paths, namespace
  index, data type, browse, subscriptions), each raising the project's errors only;
- :class:`BatchSubscription`: a subscription that hands each publish response whole to
  one callback (a notification burst becomes one batch);
- :func:`map_asyncua_errors`: asyncua's exceptions as the project's. A bad status in a
  service result (``UaStatusCodeError``) is :class:`RequestRefused` (``code``, and
  ``counter`` from :func:`status_counter`); a broken connection (``ConnectionError``,
  ``OSError``, ``TimeoutError``, another ``UaError``) is :class:`ConnectionLost`.
  :func:`unreachable_reason` words a failed connect (:class:`DeviceUnreachable`);
- :func:`install_log_filter`: asyncua's client lines thinned (the first of each kind as
  one line, the rest counted; a lost connection dropped, as the driver reports it
  itself). Installed when a :class:`UaClient` is made, not at import.

The secure channel is set up by security.py (policy, identity, the server certificate's
trust) and application certificates are made by certificates.py with asyncua's crypto
helpers: those two modules are this adapter's security half, the only others that import
asyncua.

Reliance on asyncua beyond its documented API (asyncua 1.1 to 2.x), each pinned by a test:

- ``Subscription.publish_callback(publish_result)``: the session's publish loop calls it
  with each ``PublishResult`` of the subscription (``Subscription._create`` registers it
  with ``create_subscription(params, callback=...)``); :class:`BatchSubscription`
  overrides it to hand the ``NotificationData`` whole to the driver instead of one
  handler call per item, and keeps ``last_publish_at`` / ``last_sequence_number`` as
  asyncua's own does; a handler given (a sentinel never called) keeps asyncua's
  iterator queue off. tests/drivers/opcua/test_asyncua_adapter.py;
- the loggers asyncua's client writes to (:data:`ASYNCUA_CLIENT_LOGGERS`: the session's
  publish loop, the socket protocol, the secure channel); tests/drivers/opcua/
  test_asyncua_adapter.py and tests/integration/test_log_floods.py (a hostile server);
- ``Client.session_state_path`` and ``uaclient.session.authentication_token``: asyncua
  resumes the session whose token it finds in that file (ActivateSession on a new
  channel, OPC UA Part 4 6.7), and the token tells whether the session resumed is the one
  whose subscriptions the driver left behind; tests/drivers/opcua/test_opcua_driver.py
  (a server restart and a dropped connection keep one session and one subscription);
- ``certificate_validator``: asyncua calls it with the server's certificate before the
  session, and an ``asyncua.common.utils.ServiceError`` raised from it refuses the
  certificate with that status (security.py); tests/drivers/opcua/test_opcua_security.py.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from asyncua import Client, ua
from asyncua.common.subscription import Subscription
from asyncua.ua.status_codes import code_to_name_doc

from gateway.errors import (
    ConfigError,
    ConnectionLost,
    GatewayError,
    RequestRefused,
)
from gateway.repeated_log import LibraryLogFilter, install_library_filter

__all__ = [
    "ASYNCUA_CLIENT_LOGGERS",
    "AsyncuaLogFilter",
    "BatchSubscription",
    "UaClient",
    "describe",
    "install_log_filter",
    "map_asyncua_errors",
    "status_counter",
    "status_names",
    "subscription_parameters",
    "ua",
    "unreachable_reason",
]

log = logging.getLogger(__name__)

#: what a broken connection looks like in asyncua
_TRANSPORT_ERRORS = (ConnectionError, OSError, TimeoutError, ua.UaError)
#: the logger of asyncua's session (its publish loop)
UA_SESSION_LOGGER = "asyncua.client.ua_session.UaSession"
#: every logger asyncua's client side writes to (a filter on a logger sees only the records
#: logged to that very logger, not its children's)
ASYNCUA_CLIENT_LOGGERS = (
    UA_SESSION_LOGGER,
    "asyncua.client.ua_session",
    "asyncua.client.ua_client.UASocketProtocol",
    "asyncua.client.ua_client.UaClient",
    "asyncua.client.client",
    "asyncua.common.subscription",
    "asyncua.uaprotocol",  # the secure channel (asyncua/common/connection.py)
)


# -- errors ------------------------------------------------------------------------------


@contextmanager
def map_asyncua_errors() -> Iterator[None]:
    """asyncua's exceptions raised in the block as the project's (module docstring); the
    message is :func:`describe` of asyncua's error, for the caller to put in context."""
    try:
        yield
    except GatewayError:
        raise
    except ua.UaStatusCodeError as exc:
        raise RequestRefused(status_counter(exc.code), describe(exc), exc.code) from exc
    except _TRANSPORT_ERRORS as exc:
        raise ConnectionLost(describe(exc)) from exc


def describe(exc: BaseException) -> str:
    """asyncua's error in words: a status with its description, else type and text."""
    if isinstance(exc, ua.UaStatusCodeError):
        status = ua.StatusCode(exc.code)
        return f"{status.name}: {status.doc}" if status.doc else status.name
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def unreachable_reason(exc: BaseException, endpoint: str, timeout: float) -> str:
    """Why a connect to ``endpoint`` failed, for :class:`DeviceUnreachable`."""
    if isinstance(exc, ConnectionLost | RequestRefused) and exc.__cause__ is not None:
        exc = exc.__cause__  # asyncua's own error (map_asyncua_errors) says more here
    if isinstance(exc, TimeoutError):
        return f"no answer from {endpoint} within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host of {endpoint} (DNS lookup failed: {exc.strerror})"
    if isinstance(exc, ConnectionRefusedError):
        return (f"connection refused by {endpoint}: nothing listens there or a firewall "
                "rejects it")
    if isinstance(exc, OSError):
        return f"cannot connect to {endpoint}: {exc.strerror or exc}"
    if isinstance(exc, ConfigError):
        return f"cannot set up the session: {exc}"
    return f"{endpoint} refused the session: {describe(exc)}"


def status_counter(code: int) -> str:
    """Error counter of a status code: ``bad_node_id_unknown`` style, from its name."""
    name = ua.StatusCode(code).name
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


@cache
def status_names() -> Mapping[int, tuple[str, str]]:
    """Every status code asyncua knows -> its name and description."""
    return MappingProxyType(dict(code_to_name_doc))


# -- the client --------------------------------------------------------------------------


class UaClient:
    """One asyncua client connection (auto-reconnect off: the device runner owns
    reconnects), and the service calls the driver makes.

    ``on_lost`` is called once with the reason when asyncua sees the connection break
    (its watchdog, or the socket closing). Every method raises the project's errors only
    (:func:`map_asyncua_errors`).
    """

    def __init__(self, endpoint: str, timeout: float, *, watchdog_interval: float = 1.0,
                 session_timeout: float | None = None, session_file: Path | None = None,
                 on_lost: Callable[[str], None] | None = None) -> None:
        install_log_filter()
        self.endpoint = endpoint
        self.timeout = timeout
        client = self._client = Client(endpoint, timeout=timeout,
                                       watchdog_intervall=watchdog_interval)
        if session_timeout is not None:
            client.session_timeout = int(session_timeout * 1000)
        client.session_state_path = session_file
        if on_lost is not None:
            async def connection_lost(exc: Exception) -> None:
                on_lost(f"connection to {endpoint} lost ({describe(exc)})")

            client.connection_lost_callback = connection_lost

    @property
    def client(self) -> Client:
        """asyncua's client, for security.py (the secure channel's set-up)."""
        return self._client

    async def connect(self) -> None:
        """Open the channel and the session (resumed when the session file holds a token).
        Whatever fails is raised as it is, for :func:`unreachable_reason`."""
        await self._client.connect()

    @property
    def session_token(self) -> ua.NodeId:
        """The session's authentication token (the same after a resumption)."""
        return self._client.uaclient.session.authentication_token

    def keep_session_file(self, keep: bool) -> None:
        """``False``: a close leaves the session token in the file, so that the next connect
        resumes the session (asyncua deletes the file on a clean disconnect)."""
        if not keep:
            self._client.session_state_path = None

    async def close(self) -> None:
        """Close the session (deleting its subscriptions) and the socket; never raises."""
        try:
            async with asyncio.timeout(min(self.timeout, 2.0)):
                await self._client.disconnect()
        except Exception as exc:  # the server may be gone already
            log.debug("OPC UA disconnect: %s", describe(exc))
            self.drop()

    def drop(self) -> None:
        """Close the socket only (asyncua already unwound what it could not finish)."""
        try:
            self._client.disconnect_socket()
        except Exception:
            log.debug("OPC UA disconnect_socket failed", exc_info=True)

    async def namespace_index(self, uri: str) -> int | None:
        """The index of namespace ``uri`` on the server, None when it has none."""
        with map_asyncua_errors():
            try:
                return int(await self._client.get_namespace_index(uri))
            except ValueError:
                return None

    async def translate(self, paths: Sequence[ua.BrowsePath]) -> list[ua.BrowsePathResult]:
        with map_asyncua_errors():
            return list(await self._client.uaclient.translate_browsepaths_to_nodeids(
                list(paths)))

    async def read(self, params: ua.ReadParameters) -> list[ua.DataValue]:
        with map_asyncua_errors():
            return list(await self._client.uaclient.read(params))

    async def write(self, params: ua.WriteParameters) -> list[ua.StatusCode]:
        """Write, within the client's timeout (ConnectionLost when it passes)."""
        with map_asyncua_errors():
            async with asyncio.timeout(self.timeout):
                return list(await self._client.uaclient.write(params))

    async def variant_type(self, node_id: ua.NodeId) -> ua.VariantType:
        """The variant type of the node's DataType attribute."""
        with map_asyncua_errors():
            return await self._client.get_node(node_id).read_data_type_as_variant_type()

    async def children(self, node_id: ua.NodeId | str) -> list[ua.ReferenceDescription]:
        """The hierarchical children of a node (browse)."""
        with map_asyncua_errors():
            return list(await self._client.get_node(node_id).get_children_descriptions())

    async def browse_name(self, node_id: ua.NodeId) -> ua.QualifiedName:
        with map_asyncua_errors():
            return await self._client.get_node(node_id).read_browse_name()

    async def delete_subscriptions(self, ids: Sequence[int]) -> None:
        with map_asyncua_errors():
            await self._client.delete_subscriptions(list(ids))

    def subscription(self, params: ua.CreateSubscriptionParameters,
                     on_publish: Callable[[list[Any]], None]) -> BatchSubscription:
        """A subscription on this session (not created on the server before ``start``)."""
        return BatchSubscription(self._client.uaclient.session, params, on_publish)


# -- subscriptions -----------------------------------------------------------------------


def subscription_parameters(publishing_interval: float, keepalive_count: int
                            ) -> ua.CreateSubscriptionParameters:
    """The parameters of a subscription publishing every ``publishing_interval`` s."""
    params = ua.CreateSubscriptionParameters()
    params.RequestedPublishingInterval = publishing_interval * 1000
    params.RequestedMaxKeepAliveCount = keepalive_count
    params.RequestedLifetimeCount = keepalive_count * 6
    params.MaxNotificationsPerPublish = 0
    params.PublishingEnabled = True
    params.Priority = 0
    return params


class BatchSubscription(Subscription):  # type: ignore[misc]  # asyncua is untyped here
    """An asyncua subscription handing each publish response whole to a callback."""

    def __init__(self, session: Any, params: ua.CreateSubscriptionParameters,
                 on_publish: Callable[[list[Any]], None]) -> None:
        super().__init__(session, params, handler=_NO_HANDLER)
        self._on_publish = on_publish

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish_at = time.monotonic()
        message = publish_result.NotificationMessage
        if message.NotificationData:
            self.last_sequence_number = int(message.SequenceNumber)
            self._on_publish(message.NotificationData)

    async def start(self) -> tuple[float, int]:
        """Create it on the server: the revised publishing interval (s) and keep-alive
        count."""
        with map_asyncua_errors():
            result = await self.init()
        self.last_publish_at = time.monotonic()
        return result.RevisedPublishingInterval / 1000, result.RevisedMaxKeepAliveCount

    async def monitor(self, requests: Sequence[ua.MonitoredItemCreateRequest]
                      ) -> list[int | ua.StatusCode]:
        """Create monitored items: per request its handle, or the status that refused it."""
        with map_asyncua_errors():
            return list(await self.create_monitored_items(list(requests)))


_NO_HANDLER = object()


# -- asyncua's log -------------------------------------------------------------------------


class AsyncuaLogFilter(LibraryLogFilter):
    """asyncua's client lines thinned (:class:`~gateway.repeated_log.LibraryLogFilter`): a
    server sending junk made asyncua log an ERROR with its traceback per connection
    (``Exception raised while parsing message from server``) and a WARNING per error
    message; now the first of each kind is one line and the rest are counted. A broken
    connection is dropped: the driver reports it (ConnectionLost, one warning by the
    device runner)."""

    library = "asyncua"
    quiet = (ConnectionError, OSError)


def install_log_filter() -> AsyncuaLogFilter:
    """The filter on each of asyncua's client loggers, added the first time (idempotent)."""
    return install_library_filter(ASYNCUA_CLIENT_LOGGERS, AsyncuaLogFilter)
