"""``chenxing-gateway check`` reads the Omron CPU's model (CONTROLLER DATA READ, 05 01)."""

from __future__ import annotations

import json

from gateway.cli.check_cmd import report, run_checks
from gateway.config.loader import load_config_text
from hil.devices.fins_plc import FinsPlcSimulator
from hil.netutil import free_port


async def test_check_says_the_cpu_model_and_the_end_codes_in_words(
    plc: FinsPlcSimulator
) -> None:
    async with FinsPlcSimulator(model_name="CP1L-EM40DT-D") as refusing:
        refusing.end_code = 0x1101  # reads refused: no such area on this CPU
        devices = [
            {"name": name, "protocol": "fins", "host": "127.0.0.1", "port": sim.port,
             "transport": transport, "tags": [{"name": "melt", "type": "float32",
                                               "address": "D100"}]}
            for name, sim, transport in (("cj2", plc, "tcp"), ("cp1l", refusing, "udp"))]
        body = {"gateway": {"id": "gw", "site": "s", "line": "l"}, "devices": devices,
                "northbound": {"mqtt": {"port": free_port()}}}
        config = load_config_text(json.dumps(body), "cfg.yaml")
        checks, broker = await run_checks(config, None, 2.0)
    text = report(checks, broker)
    assert ("device cj2 (fins): OK: connected and read\n    identity: CJ2M-CPU33, version "
            "02.00, 32768 DM words, 1 EM bank\n    cj2.melt = 0") in text
    assert ("device cp1l (fins): FAILED: connected, but 1 tag not good: melt; 1 request "
            "answered FINS end code 11 01 (area classification missing: this CPU has no such "
            "memory area)\n    identity: CP1L-EM40DT-D, version 02.00") in text
