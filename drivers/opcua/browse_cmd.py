"""``chenxing-gateway browse ENDPOINT``: walk an OPC UA server's address space.

Prints one line per node, indented by depth: node id (ready to paste as a tag's
``node``), browse name (``ns:Name``, for a ``browse_path``), node class, and for
variables the data type and the access level (``r``, ``rw``). With ``--yaml`` it prints
the variables as tag entries to paste into a device block instead (name, node, type).
The server's own nodes (namespace 0: ``0:Server`` and below) are left out unless
``--all`` asks for them. It connects the way the driver does (same security and
identity code), so a browse that works means the device block will connect too.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click

from gateway import exit_codes
from gateway.config.tag_yaml import TagEntry, render_tags
from gateway.types import DataType

log = logging.getLogger(__name__)


#: OPC UA data types -> the tag type that reads them (others are not offered as tags)
TAG_TYPES = {
    "Boolean": DataType.BOOL, "SByte": DataType.INT16, "Byte": DataType.UINT16,
    "Int16": DataType.INT16, "UInt16": DataType.UINT16, "Int32": DataType.INT32,
    "UInt32": DataType.UINT32, "Int64": DataType.INT64, "UInt64": DataType.UINT64,
    "Float": DataType.FLOAT32, "Double": DataType.FLOAT64, "String": DataType.STRING,
    "LocalizedText": DataType.STRING, "DateTime": DataType.STRING,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class BrowsedNode:
    depth: int
    node_id: str
    browse_name: str
    node_class: str
    data_type: str = ""
    access: str = ""
    #: the browse names (without namespace) of the nodes above it, from the start node
    parents: tuple[str, ...] = ()
    #: a property of a variable (EURange, EngineeringUnits), not a value of the machine
    is_property: bool = False
    #: the variable holds an array (ValueRank 0 or more)
    is_array: bool = False

    @property
    def name(self) -> str:
        return self.browse_name.split(":", 1)[-1]

    def tag(self) -> TagEntry | None:
        """A tag entry reading this variable (None: not a variable, or a type no tag
        type reads)."""
        kind = TAG_TYPES.get(self.data_type)
        if self.node_class != "Variable" or kind is None or self.is_property:
            return None
        note = f"{self.data_type}, {self.access}"
        if self.is_array:  # whole as JSON text; or add index: N with the element's type
            kind, note = DataType.STRING, f"array of {self.data_type} as JSON, {self.access}; " \
                f"one element: index: N, type: {TAG_TYPES[self.data_type].value}"
        return TagEntry({"name": self.name, "node": self.node_id, "type": kind.value}, note,
                        self.parents)

    def line(self) -> str:
        text = f"{'  ' * self.depth}{self.node_id}  {self.browse_name}  {self.node_class}"
        if self.node_class == "Variable":
            text += f"  {self.data_type}  {self.access}"
        return text


@dataclass(slots=True)
class Browsed:
    """What a browse found, and how many server nodes (namespace 0) it left out."""

    nodes: list[BrowsedNode]
    hidden: int = 0


async def browse_server(client: Any, start: str, depth: int,
                        server_nodes: bool = False) -> Browsed:  # fmt: skip
    """Walk from ``start`` down ``depth`` levels (breadth per level, batched attribute reads);
    ``client`` is a :class:`~drivers.opcua.asyncua_adapter.UaClient`. The server's own
    nodes (namespace 0) below the start are skipped unless ``server_nodes``."""
    from drivers.opcua.asyncua_adapter import ua

    found = Browsed([])
    out = found.nodes
    type_names: dict[ua.NodeId, str] = {}
    seen: set[ua.NodeId] = set()

    async def walk(node: Any, level: int, parents: tuple[str, ...], in_variable: bool) -> None:
        refs = await client.children(node)
        if not server_nodes:
            found.hidden += sum(1 for r in refs if r.NodeId.NamespaceIndex == 0)
            refs = [r for r in refs if r.NodeId.NamespaceIndex != 0]
        variables = [r for r in refs if r.NodeClass == ua.NodeClass.Variable]
        attrs: dict[ua.NodeId, tuple[Any, Any, Any]] = {}
        if variables:
            params = ua.ReadParameters()
            wanted = (ua.AttributeIds.DataType, ua.AttributeIds.AccessLevel,
                      ua.AttributeIds.ValueRank)
            for ref in variables:
                for attr in wanted:
                    rv = ua.ReadValueId()
                    rv.NodeId = _plain(ref.NodeId)
                    rv.AttributeId = attr
                    params.NodesToRead.append(rv)
            values = await client.read(params)
            for i, ref in enumerate(variables):
                read = values[len(wanted) * i:len(wanted) * (i + 1)]
                dtype, access, rank = (v.Value.Value if v.StatusCode.is_good() and v.Value
                                       else None for v in read)
                attrs[_plain(ref.NodeId)] = (dtype, access, rank)
        for ref in refs:
            node_id = _plain(ref.NodeId)
            if node_id in seen:
                continue
            seen.add(node_id)
            entry = BrowsedNode(level, node_id.to_string(), ref.BrowseName.to_string(),
                                ref.NodeClass.name, parents=parents, is_property=in_variable)
            if node_id in attrs:
                dtype_id, access, rank = attrs[node_id]
                entry = BrowsedNode(level, entry.node_id, entry.browse_name, entry.node_class,
                                    await _type_name(client, dtype_id, type_names),
                                    _access_text(access), parents, in_variable,
                                    isinstance(rank, int) and rank >= 0)
            out.append(entry)
            if level + 1 < depth and ref.NodeClass in (ua.NodeClass.Object, ua.NodeClass.Variable):
                await walk(node_id, level + 1, (*parents, entry.name),
                           ref.NodeClass == ua.NodeClass.Variable)

    await walk(start, 0, (), False)
    return found


def tags_yaml(endpoint: str, start: str, nodes: list[BrowsedNode]) -> str:
    """The variables as tag entries (render_tags), the ones no tag type reads named."""
    entries = [entry for node in nodes if (entry := node.tag()) is not None]
    text = render_tags(entries, f"chenxing-gateway browse {endpoint} --start {start} --yaml")
    skipped = [n for n in nodes if n.node_class == "Variable" and not n.is_property
               and n.tag() is None]
    for node in skipped:
        text += f"# left out: {node.node_id} ({node.data_type}: no tag type reads it)\n"
    return text


def _plain(node_id: Any) -> Any:
    from drivers.opcua.asyncua_adapter import ua

    return ua.NodeId(node_id.Identifier, node_id.NamespaceIndex, node_id.NodeIdType)


async def _type_name(client: Any, dtype_id: Any, cache: dict[Any, str]) -> str:
    if dtype_id is None:
        return "?"
    if dtype_id not in cache:
        try:
            name = await client.browse_name(dtype_id)
            cache[dtype_id] = name.Name
        except Exception:  # a server without type nodes: show the id
            cache[dtype_id] = dtype_id.to_string()
    return cache[dtype_id]


def _access_text(level: int | None) -> str:
    if level is None:
        return "?"
    return ("r" if level & 1 else "-") + ("w" if level & 2 else "-")


@click.command()
@click.argument("endpoint")
@click.option("--depth", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Levels below the start node.")
@click.option("--start", default="i=85", show_default=True,
              help="Node id to start from (i=85 is the Objects folder).")
@click.option("--username", default=None, help="User name (else anonymous).")
@click.option("--password-env", default=None, metavar="VAR",
              help="Environment variable holding the password.")
@click.option("--policy", type=click.Choice(["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep",
                                             "Aes256_Sha256_RsaPss"]), default="None",
              show_default=True)
@click.option("--mode", type=click.Choice(["None", "Sign", "SignAndEncrypt"]), default=None,
              help="Default: None, or SignAndEncrypt with a secure policy.")
@click.option("--certificate", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--private-key", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--trust-dir", type=click.Path(exists=True, file_okay=False), default=None)
@click.option("--trust-any-server", is_flag=True, help="Commissioning: accept any server cert.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True, help="Seconds to wait for each answer.")
@click.option("--yaml", "as_yaml", is_flag=True,
              help="Print the variables as tag entries to paste into the device's tags.")
@click.option("--all", "server_nodes", is_flag=True,
              help="Also the server's own nodes (namespace 0, e.g. 0:Server).")
def browse(endpoint: str, depth: int, start: str, username: str | None,
           password_env: str | None, policy: str, mode: str | None, certificate: str | None,
           private_key: str | None, trust_dir: str | None, trust_any_server: bool,
           timeout: float, as_yaml: bool, server_nodes: bool) -> None:
    """Browse an OPC UA server: node id, browse name, class, data type, access level."""
    from pydantic import ValidationError

    from drivers.opcua.config import OpcUaDeviceConfig
    from gateway.config.plain_errors import plain_errors

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    body: dict[str, Any] = {
        "name": "browse", "protocol": "opcua", "endpoint": endpoint, "timeout": timeout,
        "tags": [PLACEHOLDER_TAG],
        "security": {"policy": policy,
                     "mode": mode or ("None" if policy == "None" else "SignAndEncrypt"),
                     "certificate": certificate, "private_key": private_key,
                     "trust_dir": trust_dir, "trust_any_server": trust_any_server},
    }
    if username is not None:
        if password_env is None:
            raise click.UsageError("--username needs --password-env")
        body.update(username=username, password={"env": password_env})
    try:
        cfg = OpcUaDeviceConfig.model_validate(body)
    except ValidationError as exc:
        words = plain_errors(OpcUaDeviceConfig, body, exc.errors())
        raise click.UsageError("; ".join(
            f"{'.'.join(map(str, path))}: {message}" for path, message in words)) from None
    try:
        found = asyncio.run(browse_nodes(cfg, start, depth, server_nodes))
    except Exception as exc:
        click.echo(f"browse failed: {exc}", err=True)
        sys.exit(exit_codes.RUNTIME_FAILURE)
    if as_yaml:
        click.echo(tags_yaml(endpoint, start, found.nodes), nl=False)
    else:
        for node in found.nodes:
            click.echo(node.line())
    if found.hidden:
        click.echo(f"({found.hidden} nodes of the server itself, namespace 0, left out; "
                   "--all shows them)", err=True)


#: a tag the config API adds to a device sent without tags, for its config to validate
PLACEHOLDER_TAG = {"name": "unused", "node": "i=2258", "type": "float64"}
#: levels one API browse walks at most
MAX_API_DEPTH = 10


async def browse_for_api(device: Mapping[str, Any], request: Mapping[str, Any]
                         ) -> dict[str, Any]:
    """``POST /api/browse`` for an OPC UA device: ``{start, depth, builtin}`` walked as the
    CLI's ``browse`` walks it (the server's own nodes left out unless ``builtin``), with
    the device's endpoint, security and identity. Raises ``ValueError`` for a bad request,
    pydantic's ``ValidationError`` for a bad device."""
    from drivers.opcua.config import OpcUaDeviceConfig

    cfg = OpcUaDeviceConfig.model_validate(
        {**device, "tags": device.get("tags") or [PLACEHOLDER_TAG]})
    start, depth = request.get("start", "i=85"), request.get("depth", 3)
    builtin = request.get("builtin", False)
    if not isinstance(start, str) or not start or len(start) > 512:
        raise ValueError("start: a node id (i=85 is the Objects folder)")
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_API_DEPTH:
        raise ValueError(f"depth: 1..{MAX_API_DEPTH}")
    if not isinstance(builtin, bool):
        raise ValueError("builtin: true or false")
    found = await browse_nodes(cfg, start, depth, builtin)
    nodes = []
    for node in found.nodes:
        entry = node.tag()
        nodes.append({"node_id": node.node_id, "name": node.name,
                      "browse_name": node.browse_name, "node_class": node.node_class,
                      "path": "/".join((*node.parents, node.name)), "depth": node.depth,
                      "data_type": node.data_type or None, "access": node.access or None,
                      "writable": "w" in node.access, "is_array": node.is_array,
                      "tag": None if entry is None else dict(entry.keys)})
    return {"start": start, "depth": depth, "nodes": nodes, "hidden": found.hidden}


async def browse_nodes(cfg: Any, start: str, depth: int, server_nodes: bool) -> Browsed:
    """Connect with ``cfg`` (an OPC UA device config), walk, close."""
    from drivers.opcua import security
    from drivers.opcua.asyncua_adapter import UaClient

    client = UaClient(cfg.endpoint, cfg.timeout)
    try:
        async with asyncio.timeout(cfg.timeout * 2):
            await security.configure(client.client, cfg)
            await client.connect()
    except BaseException:
        client.drop()
        raise
    try:
        return await browse_server(client, start, depth, server_nodes)
    finally:
        await client.close()
