"""Simulated injection-moulding machine PLC on OPC UA (a real asyncua server).

Address space (namespace ``urn:chenxing:hil:injection-moulding``, index 2), all
string node ids, under ``Objects/Machine``, ``Objects/Types`` and ``Objects/Scale``:

| node id | type | access |
| --- | --- | --- |
| ``Machine.MeltTemp``, ``Machine.MouldTemp`` | Double, degC | read |
| ``Machine.InjectionPressure`` | Double, bar | read |
| ``Machine.CycleTime`` | Double, s (last completed cycle) | read |
| ``Machine.PartCount`` | UInt32 | read |
| ``Machine.State`` | String (``CLOSING`` ... ``EJECTING``) | read |
| ``Machine.Phase`` | UInt16 (1 close .. 6 eject) | read |
| ``Machine.Running`` | Boolean | read |
| ``Machine.CycleStart`` | DateTime | read |
| ``Machine.ZoneTemps`` | Double[4], barrel zones feed to nozzle | read |
| ``Machine.MeltTempSetpoint`` | Double, degC (100..350, applied to the model) | read/write |
| ``Machine.HoldTime`` | Double, s (0.1..30, applied from the next hold) | read/write |
| ``Types.<T>`` (every type of :data:`TYPE_VALUES`) | fixed values | read/write |
| ``Scale.V00000`` ... (``scale=N``) | Double, updated at ``scale_rate`` Hz | read |

Values are written every ``update_interval`` wall-clock seconds from the
process model, each with a source timestamp. Setpoints and type values live in
the simulator object, so they survive :meth:`OpcUaPlcSimulator.stop` /
:meth:`start` (a PLC restart on the same port).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.address_space import NodeData

from hil.devices.opcua_deadband import install_percent_deadband
from hil.netutil import free_port
from hil.opcua_certs import make_app_certificate
from hil.process.injection_moulding import InjectionMouldingModel, MachineReading

__all__ = ["NAMESPACE_URI", "SECURITY_CHOICES", "TYPE_VALUES", "OpcUaPlcSimulator"]

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:chenxing:hil:injection-moulding"
APPLICATION_URI = "urn:chenxing:hil:opcua-plc"

#: security endpoint names the simulator accepts -> asyncua policy type
SECURITY_CHOICES: dict[str, ua.SecurityPolicyType] = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    "Aes128_Sha256_RsaOaep_Sign": ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    "Aes128_Sha256_RsaOaep_SignAndEncrypt": (
        ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt
    ),
    "Aes256_Sha256_RsaPss_Sign": ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    "Aes256_Sha256_RsaPss_SignAndEncrypt": ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
}

#: ``Types.<name>``: (variant type, initial value)
TYPE_VALUES: dict[str, tuple[ua.VariantType, Any]] = {
    "Boolean": (ua.VariantType.Boolean, True),
    "SByte": (ua.VariantType.SByte, -12),
    "Byte": (ua.VariantType.Byte, 200),
    "Int16": (ua.VariantType.Int16, -1234),
    "UInt16": (ua.VariantType.UInt16, 54321),
    "Int32": (ua.VariantType.Int32, -123456789),
    "UInt32": (ua.VariantType.UInt32, 3_000_000_000),
    "Int64": (ua.VariantType.Int64, -(2**40)),
    "UInt64": (ua.VariantType.UInt64, 2**50),
    "Float": (ua.VariantType.Float, 1.5),
    "Double": (ua.VariantType.Double, 3.25),
    "String": (ua.VariantType.String, "mould-A17"),
    "DateTime": (
        ua.VariantType.DateTime,
        dt.datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=dt.UTC),
    ),
    "DoubleArray": (ua.VariantType.Double, [1.0, 2.5, -3.0]),
}

_MACHINE_VARS: dict[str, ua.VariantType] = {
    "MeltTemp": ua.VariantType.Double,
    "MouldTemp": ua.VariantType.Double,
    "InjectionPressure": ua.VariantType.Double,
    "CycleTime": ua.VariantType.Double,
    "PartCount": ua.VariantType.UInt32,
    "State": ua.VariantType.String,
    "Phase": ua.VariantType.UInt16,
    "Running": ua.VariantType.Boolean,
    "CycleStart": ua.VariantType.DateTime,
    "ZoneTemps": ua.VariantType.Double,
}
_SETPOINTS = ("MeltTempSetpoint", "HoldTime")
#: EURange properties (Part 8 AnalogItem): what a percent deadband is a percentage of
EU_RANGES: dict[str, tuple[float, float]] = {
    "Machine.MeltTemp": (0.0, 400.0),
    "Machine.InjectionPressure": (0.0, 2000.0),
}


class _UserManager:
    """Anonymous users and, when configured, username/password users (role User)."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is None:
            return User(role=UserRole.User)
        if self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


class OpcUaPlcSimulator:
    """An injection-moulding machine PLC on OPC UA.

    Args:
        model: the process model; default a seeded :class:`InjectionMouldingModel`.
        host, port: where to listen; port 0 picks a free port once and keeps it.
        update_interval: wall-clock seconds between value updates.
        security: endpoint names from :data:`SECURITY_CHOICES` (default ``["None"]``).
        users: username -> password accepted besides anonymous (``allow_anonymous``).
        certificate, private_key: the server's certificate (DER/PEM) and key; generated
            self-signed into a temporary folder when a secure endpoint needs them.
        scale, scale_rate: extra ``Scale.Vnnnnn`` Double variables and their update rate (Hz).
    """

    def __init__(
        self,
        model: InjectionMouldingModel | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        update_interval: float = 0.1,
        security: Sequence[str] = ("None",),
        users: dict[str, str] | None = None,
        allow_anonymous: bool = True,
        certificate: Path | None = None,
        private_key: Path | None = None,
        scale: int = 0,
        scale_rate: float = 1.0,
    ) -> None:
        unknown = [s for s in security if s not in SECURITY_CHOICES]
        if unknown:
            raise ValueError(f"unknown security endpoints {unknown}; use {list(SECURITY_CHOICES)}")
        self.model = model if model is not None else InjectionMouldingModel(seed=0)
        self.host = host
        self.port = port or free_port(host)
        self.update_interval = update_interval
        self.security = tuple(security)
        self.users = dict(users or {})
        self.allow_anonymous = allow_anonymous
        self.scale = scale
        self.scale_rate = scale_rate
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if certificate is None and any(s != "None" for s in self.security):
            self._tmp = tempfile.TemporaryDirectory(prefix="chenxing-opcua-plc-")
            certificate, private_key = make_app_certificate(
                Path(self._tmp.name) / "server-cert.der",
                Path(self._tmp.name) / "server-key.pem",
                APPLICATION_URI,
                server=True,
            )
        self.certificate = certificate
        self.private_key = private_key
        self._server: Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._ns = 2
        self._nodes: dict[str, ua.NodeId] = {}
        self._types: dict[str, ua.Variant] = {
            name: ua.Variant(value, vt) for name, (vt, value) in TYPE_VALUES.items()
        }
        self._overrides: dict[str, ua.StatusCode] = {}
        self._extra: dict[str, ua.Variant] = {}
        self._extra_ranges: dict[str, tuple[float, float]] = {}
        self._extra_writable: set[str] = set()
        self._last_scale = 0.0
        self.writes_applied = 0

    # -- lifecycle ------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def session_count(self) -> int:
        """Sessions open on the server now (to check that clients do not pile them up)."""
        if self._server is None:
            return 0
        return len(self._server.iserver._external_sessions)

    @property
    def subscription_count(self) -> int:
        """Subscriptions alive on the server now (all sessions)."""
        if self._server is None:
            return 0
        return len(self._server.iserver.subscription_service.subscriptions)

    def node_id(self, name: str) -> str:
        """The node id string of a variable, e.g. ``ns=2;s=Machine.MeltTemp``."""
        return f"ns={self._ns};s={name}"

    async def start(self) -> None:
        """Build the address space and listen (on the same port after a :meth:`stop`)."""
        if self._server is not None:
            return
        install_percent_deadband()  # asyncua's server ignores percent deadbands otherwise
        server = Server(user_manager=_UserManager(self.users))  # type: ignore[arg-type]
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}")
        server.set_server_name("chenxing injection-moulding PLC (simulated)")
        await server.set_application_uri(APPLICATION_URI)
        server.set_security_policy([SECURITY_CHOICES[s] for s in self.security])
        tokens: list[type] = [ua.UserNameIdentityToken] if self.users else []
        if self.allow_anonymous:
            tokens.insert(0, ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        if self.certificate is not None and self.private_key is not None:
            await server.load_certificate(str(self.certificate))
            await server.load_private_key(str(self.private_key))
        self._ns = await server.register_namespace(NAMESPACE_URI)
        await self._build(server)
        try:
            await server.start()
        except OSError as exc:
            raise OSError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        self._server = server
        await self._update(time.time())
        self._task = asyncio.create_task(self._run(), name="opcua-plc-updates")
        log.info("OPC UA PLC listening on %s (%s)", self.endpoint, ", ".join(self.security))

    async def stop(self) -> None:
        """Stop listening; every client session is dropped."""
        server, self._server = self._server, None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if server is not None:
            await server.stop()
            log.info("OPC UA PLC on %s stopped", self.endpoint)

    async def restart(self, downtime_s: float = 0.0) -> None:
        await self.stop()
        if downtime_s > 0:
            await asyncio.sleep(downtime_s)
        await self.start()

    # -- device-side hooks ------------------------------------------------------------
    def set_status(self, name: str, status: int | None) -> None:
        """Serve ``name`` with OPC UA status ``status`` (e.g.
        ``ua.StatusCodes.UncertainLastUsableValue``) until cleared with ``None``."""
        if status is None:
            self._overrides.pop(name, None)
        else:
            self._overrides[name] = ua.StatusCode(status)

    def drop_connections(self) -> int:
        """Abort every client TCP connection now (a cable pulled); the server keeps listening.

        Returns how many were dropped."""
        if self._server is None or self._server.bserver is None:
            return 0
        clients = list(self._server.bserver.clients)
        for protocol in clients:
            if protocol.transport is not None:
                protocol.transport.abort()
        log.info("OPC UA PLC: dropped %d connection(s)", len(clients))
        return len(clients)

    async def add_variable(
        self, name: str, value: float | ua.Variant, eu_range: tuple[float, float] | None = None,
        vtype: ua.VariantType = ua.VariantType.Double, writable: bool = False,
        status: int | None = None,
    ) -> None:
        """Create a variable ``name`` now (a node that appears after the client started), a
        Double unless ``vtype`` says otherwise (an int64 or uint64 keeps its exact int), with an
        EURange property when ``eu_range`` (low, high) is given. A ``ua.Variant`` is served
        as it is (strings, arrays, dates, localized text: the golden cases); ``status``
        serves it with that OPC UA status code."""
        self._extra[name] = (value if isinstance(value, ua.Variant)
                             else ua.Variant(_typed(value, vtype), vtype))
        if writable:
            self._extra_writable.add(name)
        if eu_range is not None:
            self._extra_ranges[name] = eu_range
        if self._server is not None:
            folder = self._server.get_node(ua.NodeId("Machine", self._ns))
            await self._add(folder, name, self._extra[name], writable=writable,
                            eu_range=eu_range)
            if status is not None:
                await self._server.write_attribute_value(
                    self._nodes[name], ua.DataValue(self._extra[name],
                                                    StatusCode=ua.StatusCode(status)))

    async def set_value(self, name: str, value: float) -> None:
        """Set a variable added with :meth:`add_variable` from the device side."""
        vtype = self._extra[name].VariantType
        self._extra[name] = ua.Variant(_typed(value, vtype), vtype)
        if self._server is not None:
            stamp = dt.datetime.now(dt.UTC)
            await self._server.write_attribute_value(
                self._nodes[name], ua.DataValue(self._extra[name], SourceTimestamp=stamp,
                                                ServerTimestamp=stamp))

    def get_value(self, name: str) -> Any:
        """The value of a variable as the server holds it now."""
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        dv = self._server.read_attribute_value(self._nodes[name])
        return None if dv.Value is None else dv.Value.Value

    # -- internals --------------------------------------------------------------------
    async def _add(self, parent: Any, name: str, value: ua.Variant, writable: bool,
                   eu_range: tuple[float, float] | None = None) -> None:
        nodeid = ua.NodeId(name, self._ns)
        var = await parent.add_variable(nodeid, ua.QualifiedName(name.split(".")[-1], self._ns),
                                        value, varianttype=value.VariantType)
        if writable:
            await var.set_writable()
        if eu_range is not None:
            await var.add_property(ua.NodeId(f"{name}.EURange", self._ns),
                                   ua.QualifiedName("EURange", 0),
                                   ua.Range(Low=eu_range[0], High=eu_range[1]))
        self._nodes[name] = nodeid

    async def _build(self, server: Server) -> None:
        objects = server.nodes.objects
        machine = await objects.add_object(ua.NodeId("Machine", self._ns), f"{self._ns}:Machine")
        reading = self.model.state_at(time.time())
        for name, value in _machine_values(reading).items():
            await self._add(machine, f"Machine.{name}", value, writable=False,
                            eu_range=EU_RANGES.get(f"Machine.{name}"))
        for name in _SETPOINTS:
            value = ua.Variant(self._setpoint(name), ua.VariantType.Double)
            await self._add(machine, f"Machine.{name}", value, writable=True)
            server.set_attribute_value_setter(self._nodes[f"Machine.{name}"], self._on_setpoint)
        for name, value in self._extra.items():
            await self._add(machine, name, value, writable=name in self._extra_writable,
                            eu_range=self._extra_ranges.get(name))
        types = await objects.add_object(ua.NodeId("Types", self._ns), f"{self._ns}:Types")
        for name, value in self._types.items():
            await self._add(types, f"Types.{name}", value, writable=True)
            server.set_attribute_value_setter(self._nodes[f"Types.{name}"], self._on_type_write)
        if self.scale:
            folder = await objects.add_object(ua.NodeId("Scale", self._ns), f"{self._ns}:Scale")
            for i in range(self.scale):
                await self._add(folder, f"Scale.V{i:05d}", ua.Variant(0.0, ua.VariantType.Double),
                                writable=False)

    def _setpoint(self, name: str) -> float:
        return self.model.melt_setpoint if name == "MeltTempSetpoint" else self.model.hold_time

    def _on_setpoint(self, node: NodeData, attr: ua.AttributeIds, value: ua.DataValue) -> None:
        name = str(node.nodeid.Identifier)
        try:
            if name == "Machine.MeltTempSetpoint":
                self.model.set_melt_setpoint(float(value.Value.Value))
            else:
                self.model.set_hold_time(float(value.Value.Value))
        except (TypeError, ValueError) as exc:
            log.warning("OPC UA PLC: %s rejected: %s", name, exc)
        else:
            self.writes_applied += 1
        stamp = dt.datetime.now(dt.UTC)
        node.attributes[attr].value = ua.DataValue(
            ua.Variant(self._setpoint(name.split(".", 1)[1]), ua.VariantType.Double),
            SourceTimestamp=stamp, ServerTimestamp=stamp,
        )

    def _on_type_write(self, node: NodeData, attr: ua.AttributeIds, value: ua.DataValue) -> None:
        name = str(node.nodeid.Identifier).split(".", 1)[1]
        if value.Value is not None:
            self._types[name] = value.Value
        self.writes_applied += 1
        stamp = value.SourceTimestamp or dt.datetime.now(dt.UTC)
        node.attributes[attr].value = ua.DataValue(value.Value, SourceTimestamp=stamp,
                                                   ServerTimestamp=dt.datetime.now(dt.UTC))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.update_interval)
            try:
                await self._update(time.time())
            except Exception:  # a simulator bug must show, not kill the updates silently
                log.exception("OPC UA PLC: update failed")

    async def _update(self, now: float) -> None:
        server = self._server
        if server is None:
            return
        reading = self.model.state_at(now)
        stamp = dt.datetime.fromtimestamp(now, dt.UTC)
        for name, value in _machine_values(reading).items():
            await self._write(server, f"Machine.{name}", value, stamp)
        for name in _SETPOINTS:
            status = self._overrides.get(f"Machine.{name}")
            if status is not None:
                value = ua.Variant(self._setpoint(name), ua.VariantType.Double)
                await self._write(server, f"Machine.{name}", value, stamp)
        if self.scale and now - self._last_scale >= 1.0 / self.scale_rate:
            self._last_scale = now
            for i in range(self.scale):
                v = ua.Variant(math.sin(now * 0.5 + i * 0.01) * 100.0, ua.VariantType.Double)
                await server.write_attribute_value(
                    self._nodes[f"Scale.V{i:05d}"], ua.DataValue(v, SourceTimestamp=stamp,
                                                                 ServerTimestamp=stamp))

    async def _write(
        self, server: Server, name: str, value: ua.Variant, stamp: dt.datetime
    ) -> None:
        status = self._overrides.get(name)
        dv = ua.DataValue(value, StatusCode=status or ua.StatusCode(), SourceTimestamp=stamp,
                          ServerTimestamp=stamp)
        await server.write_attribute_value(self._nodes[name], dv)


def _machine_values(r: MachineReading) -> dict[str, ua.Variant]:
    V = ua.VariantType
    return {
        "MeltTemp": ua.Variant(r.melt_temp_c, V.Double),
        "MouldTemp": ua.Variant(r.mould_temp_c, V.Double),
        "InjectionPressure": ua.Variant(r.injection_pressure_bar, V.Double),
        "CycleTime": ua.Variant(r.cycle_time_s, V.Double),
        "PartCount": ua.Variant(r.part_count, V.UInt32),
        "State": ua.Variant(r.state, V.String),
        "Phase": ua.Variant(int(r.phase), V.UInt16),
        "Running": ua.Variant(True, V.Boolean),
        "CycleStart": ua.Variant(dt.datetime.fromtimestamp(r.cycle_start, dt.UTC), V.DateTime),
        "ZoneTemps": ua.Variant(list(r.zone_temps_c), V.Double),
    }


def _typed(value: float, vtype: ua.VariantType) -> Any:
    """``value`` as the variant type holds it: ints exact (never through float) for the
    integer types, floats otherwise."""
    if vtype in _INTEGER_VARIANTS:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{vtype.name} takes whole numbers, not {value}")
        return int(value)
    return float(value)


_INTEGER_VARIANTS = frozenset({
    ua.VariantType.SByte, ua.VariantType.Byte, ua.VariantType.Int16, ua.VariantType.UInt16,
    ua.VariantType.Int32, ua.VariantType.UInt32, ua.VariantType.Int64, ua.VariantType.UInt64,
})  # fmt: skip
