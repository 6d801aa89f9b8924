"""``chenxing-gateway check`` reads the MELSEC CPU's model (Read CPU model) and says it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from gateway.cli.check_cmd import report, run_checks
from gateway.config.loader import load_config_text
from hil.netutil import free_port


async def test_check_says_the_cpu_model(mc_plc: Callable[..., Any]) -> None:
    fx5 = await mc_plc(series="iq-f")
    q = await mc_plc(series="q")
    q.end_code = 0xC059  # as a Q built-in port answers Read CPU model; reads fail too here
    devices = [
        {"name": name, "protocol": "mc", "host": "127.0.0.1", "port": sim.port,
         "plc_series": series, "transport": "udp",
         "tags": [{"name": "melt", "type": "float32", "address": "D100"}]}
        for name, sim, series in (("fx5", fx5, "iq-f"), ("q", q, "q"))]
    body = {"gateway": {"id": "gw", "site": "s", "line": "l"}, "devices": devices,
            "northbound": {"mqtt": {"port": free_port()}}}
    config = load_config_text(json.dumps(body), "cfg.yaml")
    checks, broker = await run_checks(config, None, 2.0)
    text = report(checks, broker)
    assert "device fx5 (mc): OK: connected and read\n    identity: FX5U-32MT/ES (model code " \
           "4A29H)\n    fx5.melt = " in text
    assert ("device q (mc): FAILED: connected, but 1 tag not good: melt; 1 request answered "
            "MC protocol end code C059H (command or subcommand not supported)\n"
            "    identity: unknown (read CPU model: the device answered end code C059H "
            "(command or subcommand not supported))") in text
