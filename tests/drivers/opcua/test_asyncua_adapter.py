"""drivers/opcua/asyncua_adapter.py: asyncua's errors as the project's, and the asyncua
internals the adapter relies on (its docstring lists them), pinned against the simulated PLC
(a real asyncua server on a loopback port)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from typing import Any

import pytest

from drivers.opcua.asyncua_adapter import (
    UA_SESSION_LOGGER,
    AsyncuaLogFilter,
    UaClient,
    map_asyncua_errors,
    subscription_parameters,
    ua,
    unreachable_reason,
)
from gateway.errors import ConnectionLost, RequestRefused
from hil.devices.opcua_plc import OpcUaPlcSimulator


async def test_each_publish_response_reaches_the_subscription_whole() -> None:
    """Pins asyncua: the session's publish loop calls ``Subscription.publish_callback``
    with the PublishResult; BatchSubscription hands its NotificationData on in one call."""
    bursts: list[list[Any]] = []
    three = asyncio.Event()

    def on_publish(data: list[Any]) -> None:
        bursts.append(data)
        if len(bursts) >= 3:
            three.set()

    async with OpcUaPlcSimulator(update_interval=0.05) as sim:
        client = UaClient(sim.endpoint, 2.0)
        await client.connect()
        try:
            sub = client.subscription(subscription_parameters(0.1, 10), on_publish)
            interval, keepalive = await sub.start()
            assert interval == pytest.approx(0.1) and keepalive == 10
            request = ua.MonitoredItemCreateRequest()
            request.ItemToMonitor = ua.ReadValueId(
                NodeId=ua.NodeId.from_string(sim.node_id("Machine.MeltTemp")),
                AttributeId=ua.AttributeIds.Value)
            request.MonitoringMode = ua.MonitoringMode.Reporting
            request.RequestedParameters = ua.MonitoringParameters(ClientHandle=7,
                                                                  SamplingInterval=50)
            (handle,) = await sub.monitor([request])
            assert not isinstance(handle, ua.StatusCode)
            await asyncio.wait_for(three.wait(), 10)
        finally:
            await client.close()
    for burst in bursts:  # each call one publish response, its notifications whole
        (change,) = [n for n in burst if isinstance(n, ua.DataChangeNotification)]
        assert {item.ClientHandle for item in change.MonitoredItems} == {7}
    assert sub.last_sequence_number is not None and sub.last_publish_at is not None


def test_the_log_filter_is_on_the_session_logger_once_a_client_is_made() -> None:
    """Pins asyncua: its session logs to ``asyncua.client.ua_session.UaSession``. The filter
    is installed by the first UaClient, not by importing the driver."""
    code = ("import logging, drivers.opcua.driver; "
            f"print(len(logging.getLogger({UA_SESSION_LOGGER!r}).filters))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "0"
    client = UaClient("opc.tcp://127.0.0.1:4840", 1.0)
    logger = logging.getLogger(UA_SESSION_LOGGER)
    assert client.client.uaclient.session.logger is logger
    UaClient("opc.tcp://127.0.0.1:4840", 1.0)
    assert [type(f) for f in logger.filters].count(AsyncuaLogFilter) == 1
    record = logging.LogRecord(UA_SESSION_LOGGER, logging.ERROR, __file__, 1, "publish", (),
                               (ConnectionError, ConnectionError("reset"), None))
    assert not logger.filter(record)


def _mapped(raised: BaseException) -> BaseException:
    try:
        with map_asyncua_errors():
            raise raised
    except BaseException as exc:  # the test looks at whatever comes out
        return exc
    raise AssertionError("nothing raised")


def test_map_asyncua_errors_translates_into_the_projects_errors() -> None:
    """Pure logic: a bad status is RequestRefused with its counter, a broken connection
    ConnectionLost; anything else passes as it is."""
    refused = _mapped(ua.UaStatusCodeError(ua.StatusCodes.BadUserAccessDenied))
    assert isinstance(refused, RequestRefused)
    assert (refused.code, refused.counter) == (ua.StatusCodes.BadUserAccessDenied,
                                               "bad_user_access_denied")
    assert str(refused).startswith("BadUserAccessDenied: ")
    for broken in (OSError("reset"), TimeoutError(), ua.UaError("channel closed"),
                   ConnectionResetError()):
        lost = _mapped(broken)
        assert isinstance(lost, ConnectionLost) and lost.__cause__ is broken
    assert str(_mapped(TimeoutError())) == "TimeoutError"
    bug = KeyError("x")
    assert _mapped(bug) is bug
    mine = ConnectionLost("mine")
    assert _mapped(mine) is mine


def test_a_connect_that_failed_through_the_map_is_worded_by_asyncuas_error() -> None:
    lost = _mapped(TimeoutError())
    assert unreachable_reason(lost, "opc.tcp://plc:4840", 4) == (
        "no answer from opc.tcp://plc:4840 within 4 s")
    assert "connection refused" in unreachable_reason(ConnectionRefusedError(), "x", 4)
