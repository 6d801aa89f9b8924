"""The simulated Omron PLC as the HIL uses it: ``chenxing-hil sim fins`` as a real process,
and the scenario device ``fins_plc`` with its faults."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import fins.udp  # type: ignore[import-untyped]
import pytest

from gateway.errors import ConfigError
from hil.netutil import port_is_open
from hil.scenario import load_scenario
from tests.hil.test_cli import hil_cli


def test_sim_fins_serves_the_machine_until_sigint() -> None:
    with hil_cli("sim", "fins", "--port", "0", "--node", "3") as (proc, line):
        match = re.search(r"fins listening on 127\.0\.0\.1:(\d+) \(tcp\+udp, node 3, "
                          r"CJ2M-CPU33, seed 0\)", line)
        assert match, line
        port = int(match.group(1))
        client = fins.udp.UDPFinsConnection()  # an independent FINS client
        client.connect("127.0.0.1", port=port, bind_port=0)
        client.dest_node_add, client.srce_node_add = 3, 25
        try:
            melt = client.read("d", 0, "r")
            setpoint = client.read("d", 30, "r")
        finally:
            client.fins_socket.close()
        assert 200 < melt < 240 and setpoint == 230.0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert not port_is_open("127.0.0.1", port)


FINS_BAD = """\
name: fins
duration: 5
devices:
  - {kind: fins_plc, name: cj2}
  - {kind: modbus_meter, name: meter}
faults:
  - {at: 1, action: fins_end_code, device: meter}
  - {at: 1, action: fins_bad_answers, device: cj2, answer: noise}
  - {at: 1, action: device_silence, device: meter}
  - {at: 1, action: plc_setpoint, device: cj2, hold_time: 4}
timeline:
  - {at: 1, kind: step, device: cj2, param: melt_setpoint_c, value: 240}
expect:
  - {type: no_sequence_gaps}
"""


def test_fins_faults_name_a_fins_plc(tmp_path: Path) -> None:
    path = tmp_path / "fins.yaml"
    path.write_text(FINS_BAD)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    found = {(p.line, p.path_text, p.message) for p in info.value.problems}
    assert (7, "faults[0].device", "'meter' is not a fins_plc") in found
    assert any(line == 8 and key == "faults[1].answer" for line, key, _ in found)
    # a silence fault: the kinds of device that take one, FINS PLCs among them
    (silence,) = [m for line, key, m in found if (line, key) == (9, "faults[2].device")]
    assert silence.startswith("'meter' is not a ") and "fins_plc" in silence, silence
    assert len(found) == 3  # a setpoint and a timeline step on the FINS PLC are fine


def test_fins_device_config_takes_the_simulators_map() -> None:
    from hil.scenario.gateway_process import fins_device_config

    entry = fins_device_config("cj2", 9600, "udp", "100ms", "300ms", writable=True)
    addresses = {t["name"]: t["address"] for t in entry["tags"]}
    assert addresses["melt_temp"] == "D0" and addresses["running"] == "CIO0.00"
    assert {t["name"] for t in entry["tags"] if t.get("writable")} == {"hold_time",
                                                                       "melt_setpoint"}
    assert (entry["protocol"], entry["transport"]) == ("fins", "udp")
