"""Percent deadband (OPC UA Part 8, 6.2) for the simulated PLC's asyncua server.

asyncua 2.1's server accepts a DataChangeFilter with DeadbandType Percent but
ignores it (it logs "not implemented" and reports every change). A real PLC
applies it against the node's EURange: a change is reported only when
``|value - last| > deadband / 100 * (EURange.High - EURange.Low)``. This module
teaches asyncua's ``MonitoredItemService`` to do that, so that the driver's
percent deadband can be tested against the simulator:

- creating a monitored item with a Percent filter on a node without an EURange
  property fails with BadFilterNotAllowed (as Part 4, 7.22.2 asks);
- otherwise the filter is replaced by a copy carrying the EURange span, which the
  deadband check uses. ``last`` is the server's previous sample (asyncua keeps no
  last-reported value), so the simulator's values should move in steps.

:func:`install_percent_deadband` patches the class once per process; servers
started afterwards (and before) all get it. Only the simulator calls it.
"""

from __future__ import annotations

import logging
from typing import Any

from asyncua import ua
from asyncua.server.monitored_item_service import MonitoredItemService
from asyncua.ua.uaprotocol_auto import DataChangeFilter

# ``ua.DataChangeFilter`` is a hand-written subclass; filters decoded from a request are
# instances of the generated class, so that is the one to test and extend

log = logging.getLogger(__name__)

_HAS_PROPERTY = ua.NodeId(ua.ObjectIds.HasProperty)


class _PercentFilter(DataChangeFilter):
    """A Percent DataChangeFilter with the EURange span of its node."""

    __slots__ = ("eu_span",)

    def __init__(self, original: DataChangeFilter, eu_span: float) -> None:
        super().__init__(Trigger=original.Trigger, DeadbandType=original.DeadbandType,
                         DeadbandValue=original.DeadbandValue)
        self.eu_span = eu_span


def eu_range(service: MonitoredItemService, node_id: ua.NodeId) -> ua.Range | None:
    """The value of the node's ``EURange`` property, if it has one."""
    node = service.aspace.get(node_id)
    if node is None:
        return None
    for ref in node.references:
        if ref.ReferenceTypeId == _HAS_PROPERTY and ref.BrowseName.Name == "EURange":
            dv = service.aspace.read_attribute_value(ref.NodeId, ua.AttributeIds.Value)
            value = dv.Value.Value if dv.Value is not None else None
            return value if isinstance(value, ua.Range) else None
    return None


def install_percent_deadband() -> None:
    """Patch asyncua's server-side monitored items to honour Percent deadbands (idempotent)."""
    if getattr(MonitoredItemService, "_chenxing_percent_deadband", False):
        return
    create = MonitoredItemService._create_data_change_monitored_item
    exceeded = MonitoredItemService._is_deadband_exceeded

    async def _create_data_change_monitored_item(
        self: MonitoredItemService, params: ua.MonitoredItemCreateRequest
    ) -> ua.MonitoredItemCreateResult:
        flt = params.RequestedParameters.Filter
        if isinstance(flt, DataChangeFilter) and flt.DeadbandType == ua.DeadbandType.Percent:
            span = eu_range(self, params.ItemToMonitor.NodeId)
            if span is None:
                result = ua.MonitoredItemCreateResult()
                result.StatusCode = ua.StatusCode(ua.StatusCodes.BadFilterNotAllowed)
                return result
            params.RequestedParameters.Filter = _PercentFilter(flt, float(span.High - span.Low))
        return await create(self, params)

    def _is_deadband_exceeded(
        self: MonitoredItemService, values: Any, flt: DataChangeFilter
    ) -> bool:
        if not isinstance(flt, _PercentFilter):
            return bool(exceeded(self, values, flt))
        cur, old = values.get_current_datavalue(), values.get_old_datavalue()
        if old is None or cur is None or cur.Value is None or old.Value is None:
            return True
        delta = abs(float(cur.Value.Value) - float(old.Value.Value))
        return delta > flt.DeadbandValue / 100.0 * flt.eu_span

    service: Any = MonitoredItemService
    service._create_data_change_monitored_item = _create_data_change_monitored_item
    service._is_deadband_exceeded = _is_deadband_exceeded
    service._chenxing_percent_deadband = True
    log.debug("asyncua server: percent deadband installed")
