"""``chenxing-gateway browse ENDPOINT``: walk an OPC UA server's address space.

Prints one line per node, indented by depth: node id (ready to paste as a tag's
``node``), browse name (``ns:Name``, for a ``browse_path``), node class, and for
variables the data type and the access level (``r``, ``rw``). It connects the
way the driver does (same security and identity code), so a browse that works
means the device block will connect too.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from typing import Any

import click

from gateway import exit_codes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrowsedNode:
    depth: int
    node_id: str
    browse_name: str
    node_class: str
    data_type: str = ""
    access: str = ""

    def line(self) -> str:
        text = f"{'  ' * self.depth}{self.node_id}  {self.browse_name}  {self.node_class}"
        if self.node_class == "Variable":
            text += f"  {self.data_type}  {self.access}"
        return text


async def browse_server(client: Any, start: str, depth: int) -> list[BrowsedNode]:
    """Walk from ``start`` down ``depth`` levels (breadth per level, batched attribute reads);
    ``client`` is a :class:`~drivers.opcua.asyncua_adapter.UaClient`."""
    from drivers.opcua.asyncua_adapter import ua

    out: list[BrowsedNode] = []
    type_names: dict[ua.NodeId, str] = {}
    seen: set[ua.NodeId] = set()

    async def walk(node: Any, level: int) -> None:
        refs = await client.children(node)
        variables = [r for r in refs if r.NodeClass == ua.NodeClass.Variable]
        attrs: dict[ua.NodeId, tuple[ua.NodeId | None, int | None]] = {}
        if variables:
            params = ua.ReadParameters()
            for ref in variables:
                for attr in (ua.AttributeIds.DataType, ua.AttributeIds.AccessLevel):
                    rv = ua.ReadValueId()
                    rv.NodeId = _plain(ref.NodeId)
                    rv.AttributeId = attr
                    params.NodesToRead.append(rv)
            values = await client.read(params)
            for i, ref in enumerate(variables):
                dtype, access = values[2 * i], values[2 * i + 1]
                attrs[_plain(ref.NodeId)] = (
                    dtype.Value.Value if dtype.StatusCode.is_good() and dtype.Value else None,
                    access.Value.Value if access.StatusCode.is_good() and access.Value else None,
                )
        for ref in refs:
            node_id = _plain(ref.NodeId)
            if node_id in seen:
                continue
            seen.add(node_id)
            entry = BrowsedNode(level, node_id.to_string(), ref.BrowseName.to_string(),
                                ref.NodeClass.name)
            if node_id in attrs:
                dtype_id, access = attrs[node_id]
                entry = BrowsedNode(level, entry.node_id, entry.browse_name, entry.node_class,
                                    await _type_name(client, dtype_id, type_names),
                                    _access_text(access))
            out.append(entry)
            if level + 1 < depth and ref.NodeClass in (ua.NodeClass.Object, ua.NodeClass.Variable):
                await walk(node_id, level + 1)

    await walk(start, 0)
    return out


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
def browse(endpoint: str, depth: int, start: str, username: str | None,
           password_env: str | None, policy: str, mode: str | None, certificate: str | None,
           private_key: str | None, trust_dir: str | None, trust_any_server: bool,
           timeout: float) -> None:
    """Browse an OPC UA server: node id, browse name, class, data type, access level."""
    from pydantic import ValidationError

    from drivers.opcua.config import OpcUaDeviceConfig

    logging.getLogger("asyncua").setLevel(logging.ERROR)
    body: dict[str, Any] = {
        "name": "browse", "protocol": "opcua", "endpoint": endpoint, "timeout": timeout,
        "tags": [{"name": "unused", "node": "i=2258", "type": "float64"}],
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
        raise click.UsageError("; ".join(e["msg"] for e in exc.errors())) from exc
    try:
        nodes = asyncio.run(_browse(cfg, start, depth))
    except Exception as exc:
        click.echo(f"browse failed: {exc}", err=True)
        sys.exit(exit_codes.RUNTIME_FAILURE)
    for node in nodes:
        click.echo(node.line())


async def _browse(cfg: Any, start: str, depth: int) -> list[BrowsedNode]:
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
        return await browse_server(client, start, depth)
    finally:
        await client.close()
