"""The driver seam: a driver is its folder plus one registration line, and nothing else.

``tests/drivers/throwaway/`` is a driver (protocol ``test_counter``) laid out as a real
one. Listed as one more package next to :data:`drivers.registry.DRIVER_PACKAGES`,
it is picked up by the config validation (the discriminated union, errors with
file, line and key, the writes capability), the JSON Schema, the runtime (it runs
and publishes through a real Mosquitto), the metrics and ``check`` — with nothing
in ``gateway/`` naming it. A static check keeps ``gateway/`` from naming drivers.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest

from drivers.registration import DriverRegistration, DriverRegistry
from drivers.registry import DRIVER_PACKAGES, REGISTRY
from gateway.cli.check_cmd import run_checks
from gateway.config.loader import load_config_text
from gateway.config.schema import schema_dict
from gateway.errors import ConfigError
from gateway.metrics import render
from hil.broker import MqttBroker
from hil.recorder import TelemetryRecorder
from tests.drivers.throwaway.config import CounterDeviceConfig
from tests.integration.gateway_harness import gateway_config, running

ROOT = Path(__file__).resolve().parents[2]
#: the registry with the throwaway driver: the shipped packages and one line more
SEAM = DriverRegistry.from_packages((*DRIVER_PACKAGES, "tests.drivers.throwaway"))

CONFIG = """\
gateway: {id: gw-1, site: plant, line: line-1}
devices:
  - name: meter
    protocol: modbus_tcp
    host: 127.0.0.1
    tags: [{name: volts, address: 0, type: float32}]
  - name: counter
    protocol: test_counter
    start: START
    poll_interval: 50ms
    tags:
      - {name: count, step: STEP}
      - {name: fast, step: 10, writable: WRITABLE, range: [0, 100]}
"""


def counter_config(start: object = 7, step: object = 3, writable: bool = False) -> str:
    return (CONFIG.replace("START", str(start)).replace("STEP", str(step))
            .replace("WRITABLE", str(writable).lower()))


def problems(text: str, drivers: DriverRegistry) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "cfg.yaml", drivers=drivers)
    return [(p.line, p.path_text, p.message) for p in info.value.problems]


def test_config_validation_takes_the_registered_driver() -> None:
    config = load_config_text(counter_config(), "cfg.yaml", drivers=SEAM)
    counter = config.devices[1]
    assert isinstance(counter, CounterDeviceConfig)
    assert (counter.start, [t.step for t in counter.tags]) == (7, [3, 10])
    # the union is the registry's: without the registration the protocol is unknown
    (line, path, message), = problems(counter_config(), REGISTRY)
    assert (line, path) == (8, "devices[1].protocol")
    assert message.startswith("unknown protocol 'test_counter' (one of modbus_tcp, ")
    # its own keys' errors at their file, line and key
    assert problems(counter_config(start=-1, step="x"), SEAM) == [
        (9, "devices[1].start", "must be greater than or equal to 0 (got -1)"),
        (12, "devices[1].tags[0].step", "expected a whole number (got 'x')"),
    ]
    # the registration declares no writes: a writable tag is refused, at its key
    assert problems(counter_config(writable=True), SEAM) == [
        (13, "devices[1].tags[1].writable",
         "test_counter devices cannot be written: writable must be false"),
    ]


def test_schema_takes_the_registered_driver_and_keeps_the_others() -> None:
    shipped = schema_dict()
    with_counter = schema_dict(SEAM)
    assert shipped == json.loads((ROOT / "config/gateway.schema.json").read_text())
    defs, shipped_defs = with_counter["$defs"], shipped["$defs"]
    assert isinstance(defs, dict) and isinstance(shipped_defs, dict)
    assert {"CounterDeviceConfig", "CounterTagConfig"} == set(defs) - set(shipped_defs)
    assert all(defs[name] == d for name, d in shipped_defs.items() if name != "GatewayConfig")
    union = with_counter["properties"]["devices"]["items"]  # type: ignore[index]
    assert union["discriminator"]["mapping"]["test_counter"] == "#/$defs/CounterDeviceConfig"
    assert set(union["discriminator"]["mapping"]) == {*REGISTRY.protocols, "test_counter"}
    assert union["oneOf"][-1] == {"$ref": "#/$defs/CounterDeviceConfig"}  # registry order
    assert "test_counter" not in json.dumps(shipped)


def test_reading_a_config_imports_no_driver_and_no_protocol_library() -> None:
    """Drivers are imported when a device runs, not when its config is read."""
    code = textwrap.dedent(f"""
        import sys
        from drivers.registration import DriverRegistry
        from drivers.registry import DRIVER_PACKAGES
        from gateway.config.loader import load_config_text
        seam = DriverRegistry.from_packages((*DRIVER_PACKAGES, "tests.drivers.throwaway"))
        load_config_text({counter_config()!r}, "cfg.yaml", drivers=seam)
        heavy = ("pymodbus", "asyncua", "serial", "smpclient", "drivers.modbus.driver",
                 "drivers.opcua.driver", "firmware_bridge.driver", "drivers.serial_line.driver",
                 "tests.drivers.throwaway.driver")
        print(sorted(m for m in heavy if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.broker
async def test_the_runtime_runs_it_publishes_it_and_exports_its_metrics(
    tmp_path: Path, mosquitto: MqttBroker
) -> None:
    device = {"name": "counter", "protocol": "test_counter", "start": 7, "poll_interval": "50ms",
              "tags": [{"name": "count", "step": 3}, {"name": "fast", "step": 10}]}
    config = gateway_config(tmp_path, mosquitto.port, [device], drivers=SEAM)
    with TelemetryRecorder(mosquitto.host, mosquitto.port) as rec:
        async with running(config, drivers=SEAM) as gw:
            assert await rec.until(
                lambda s: sum(x.tag == "counter.fast" for x in s.samples) >= 5, timeout=15)
            metrics = render(gw.gateway).decode()
            reads = gw.gateway.runners["counter"].driver.reads  # type: ignore[union-attr]
        snap = rec.snapshot()
    # every poll's count, in order, exact, with its birth metadata
    counts = [s.value for s in snap.samples if s.tag == "counter.count"]
    fast = [s.value for s in snap.samples if s.tag == "counter.fast"]
    assert counts == [7 + 3 * k for k in range(len(counts))]
    assert fast == [7 + 10 * k for k in range(len(fast))]
    assert all(s.quality == "good" for s in snap.samples)
    birth = {t["tag"]: t for t in snap.births[-1]["tags"]}
    assert birth["counter.count"]["type"] == "int32"
    # its own metrics family (its registration's), with the device-level ones
    read_lines = [ln for ln in metrics.splitlines()
                  if ln.startswith('chenxing_test_counter_reads_total{device="counter"}')]
    assert len(read_lines) == 1
    assert 5 <= float(read_lines[0].split()[-1]) <= reads  # 5 fast samples came before
    assert 'chenxing_device_up{device="counter"} 1.0' in metrics


async def test_check_connects_it_through_its_registration(tmp_path: Path) -> None:
    device = {"name": "counter", "protocol": "test_counter", "start": 1,
              "tags": [{"name": "count", "step": 2}]}
    config = gateway_config(tmp_path, 1, [device], drivers=SEAM)
    (check,), _broker = await run_checks(config, tmp_path, timeout=2.0, drivers=SEAM)
    assert (check.name, check.protocol, check.ok) == ("counter", "test_counter", True), check


def test_its_tool_joins_the_cli_and_the_tools_of_others_keep_their_form() -> None:
    """Two drivers offer ``scan``: ``scan FAMILY ...`` picks one, ``scan ...`` stays the
    first registered (Modbus), so adding a driver's tool changes no existing command."""
    from click.testing import CliRunner

    from gateway.cli.tools import DriverToolsGroup

    class SeamCli(DriverToolsGroup):
        drivers = SEAM

    cli, runner = SeamCli("chenxing-gateway"), CliRunner()
    assert {"scan", "browse", "certs"} <= set(cli.list_commands(click.Context(cli)))
    counted = runner.invoke(cli, ["scan", "test_counter", "--start", "5"])
    assert (counted.exit_code, counted.output) == (0, "5 6 7\n")
    modbus = runner.invoke(cli, ["scan", "--start", "0", "--count", "1"])
    assert modbus.exit_code == 2 and "give exactly one of --host (Modbus TCP)" in modbus.output
    assert "--table" in runner.invoke(cli, ["scan", "modbus", "--help"]).output
    listed = runner.invoke(cli, ["scan", "--help"]).output
    families = ", ".join(dict.fromkeys(r.name for r in SEAM.registrations if "scan" in r.tools))
    assert families.startswith("modbus, ") and families.endswith(", test_counter")
    assert f"{families} (without a family: modbus)" in " ".join(listed.split())
    assert "ENDPOINT" in runner.invoke(cli, ["browse", "--help"]).output  # one offer: itself


def test_the_registry_refuses_a_protocol_twice_and_a_bad_reference() -> None:
    with pytest.raises(ValueError, match="protocol 'test_counter' is registered twice"):
        SEAM.including(DriverRegistration(config=CounterDeviceConfig, driver="m:C"))
    with pytest.raises(ValueError, match=r"is not 'package\.module:name'"):
        DriverRegistration(config=CounterDeviceConfig, driver="tests.drivers.throwaway.driver")


def test_every_shipped_registration_resolves() -> None:
    """The lazily imported names of every registration exist and are what they claim."""
    from drivers.base import Driver
    from drivers.registration import load_ref

    for reg in REGISTRY.registrations:
        assert issubclass(load_ref(reg.driver), Driver), reg
        if reg.metrics is not None:
            assert callable(load_ref(reg.metrics)), reg
        if reg.firmware is not None:
            updates = load_ref(reg.firmware)
            assert all(callable(getattr(updates, m)) for m in (
                "allow_list", "check_image", "unavailable", "running", "update", "session"))
            assert isinstance(updates.device_kind, str)
        for ref in reg.tools.values():
            assert isinstance(load_ref(ref), click.Command), ref
    assert set(REGISTRY.tools()) == {"scan", "browse", "certs"}


#: modules outside the drivers' folders that gateway/ may import: the seam itself
SEAM_MODULES = {"drivers", "drivers.base", "drivers.registration", "drivers.registry",
                "drivers.firmware", "drivers.error_words"}
def test_gateway_names_no_driver() -> None:
    """No module of gateway/ imports a driver's own modules: it reaches drivers only
    through the registrations (the demo knows its devices by their protocol's name)."""
    found = []
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                is_driver = name.startswith(("drivers.", "firmware_bridge")) or name == "drivers"
                if is_driver and name not in SEAM_MODULES:
                    found.append(f"{rel}: {name}")
    assert found == []
