"""``chenxing-hil`` run as a real process: it prints its address and serves until signalled."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from hil.broker import mqtt_ping
from hil.cli import main
from hil.netutil import port_is_open

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def hil_cli(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``python -m hil.cli ARGS`` and yield it with its first stdout line."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout=60)
    try:
        assert lines and lines[0], (
            f"no address line; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        )  # type: ignore[union-attr]
        yield proc, lines[0].strip()
    finally:
        if proc.poll() is None:
            proc.terminate()  # graceful, so a broker child is stopped too
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait(timeout=60)


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "sim" in result.output and "broker" in result.output
    result = CliRunner().invoke(main, ["sim", "modbus-meter", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--seed", "--mode", "--time-scale", "--rtu"):
        assert option in result.output


def test_bad_option_is_rejected() -> None:
    result = CliRunner().invoke(main, ["sim", "modbus-meter", "--mode", "sine"])
    assert result.exit_code == 2


def test_modbus_meter_serves_until_sigint() -> None:
    with hil_cli("sim", "modbus-meter", "--port", "0", "--mode", "waveform") as (proc, line):
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert match, line
        port = int(match.group(1))
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
        assert client.connect()
        try:
            rr = client.read_input_registers(0, count=14)
            assert not rr.isError()
            voltage = client.convert_from_registers(
                rr.registers[0:2], data_type=client.DATATYPE.FLOAT32
            )
            assert 219.9 < voltage < 240.1
        finally:
            client.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert not port_is_open("127.0.0.1", port)


def test_modbus_meter_on_rtu_prints_its_serial_device() -> None:
    from pymodbus.client import ModbusSerialClient

    with hil_cli("sim", "modbus-meter", "--rtu", "--mode", "waveform") as (proc, line):
        match = re.search(r"modbus-meter on RTU (/dev/\S+) \(19200 baud 8N1, unit 1", line)
        assert match, line
        client = ModbusSerialClient(match.group(1), baudrate=19200, timeout=2)
        assert client.connect()
        try:
            rr = client.read_input_registers(0, count=2, device_id=1)
            assert not rr.isError()
            voltage = client.convert_from_registers(
                rr.registers, data_type=client.DATATYPE.FLOAT32
            )
            assert 219.9 < voltage < 240.1
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_mc_plc_serves_until_sigterm() -> None:
    """``chenxing-hil sim mc``: a MELSEC CPU on TCP and UDP; a raw 3E batch read of D110
    (the cycle phase) over each."""
    import socket
    import struct

    with hil_cli("sim", "mc", "--port", "0", "--series", "q") as (proc, line):
        match = re.search(r"mc listening on 127\.0\.0\.1:(\d+) \(tcp\+udp, q: Q03UDVCPU", line)
        assert match, line
        port = int(match.group(1))
        request = bytes.fromhex("5000 00 ff ff03 00 0c00 0400 0104 0000 6e0000 a8 0100")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as tcp:
            tcp.sendall(request)
            answer = tcp.recv(64)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(5)
            udp.sendto(request, ("127.0.0.1", port))
            datagram = udp.recv(64)
        for frame in (answer, datagram):
            assert frame[:2] == b"\xd0\x00" and struct.unpack_from("<HH", frame, 7) == (4, 0)
            assert 1 <= struct.unpack_from("<H", frame, 11)[0] <= 6
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not port_is_open("127.0.0.1", port)


def test_modbus_meter_on_udp_answers_a_udp_client() -> None:
    from pymodbus.client import ModbusUdpClient

    with hil_cli("sim", "modbus-meter", "--port", "0", "--transport", "udp",
                 "--mode", "waveform") as (proc, line):
        match = re.search(r"listening on 127\.0\.0\.1:(\d+) \(udp, unit 1", line)
        assert match, line
        client = ModbusUdpClient("127.0.0.1", port=int(match.group(1)), timeout=2)
        assert client.connect()
        try:
            rr = client.read_input_registers(0, count=2, device_id=1)
            assert not rr.isError()
        finally:
            client.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_dtu_dials_the_gateway_registers_and_answers_as_an_rtu_slave() -> None:
    """``sim dtu``: a listener stands for the gateway; the DTU dials it, sends its
    registration packet, then answers an RTU read of the meter behind it."""
    import socket

    from drivers.modbus.rtu_framing import crc16, rtu_frame

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(15)
        port = listener.getsockname()[1]
        with hil_cli("sim", "dtu", "--gateway", f"127.0.0.1:{port}", "--registration",
                     "DTU-7788", "--heartbeat-hex", "FE FE", "--mode", "waveform") as (proc, line):
            assert f"dtu dialling 127.0.0.1:{port}" in line, line
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                got = b""
                while len(got) < 8:
                    got += conn.recv(64)
                assert got.startswith(b"DTU-7788")
                conn.sendall(rtu_frame(1, bytes.fromhex("0400000002")))  # input 0..1
                answer = b""
                while len(answer) < 9:
                    answer += conn.recv(64)
                answer = answer.replace(b"\xfe\xfe", b"")[:9]
                assert answer[:3] == bytes.fromhex("010404")
                assert crc16(answer[:-2]) == int.from_bytes(answer[-2:], "little")
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0


def test_modbus_meter_port_in_use_is_a_clean_error() -> None:
    with hil_cli("sim", "modbus-meter", "--port", "0") as (proc, line):
        port = line.rsplit(":", 1)[1].split()[0]
        other = subprocess.run(
            [sys.executable, "-m", "hil.cli", "sim", "modbus-meter", "--port", port],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert other.returncode == 1
        assert "Error: cannot listen" in other.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


@pytest.mark.parametrize(
    "kind",
    [
        "mosquitto",
        "amqtt",
    ],
)
def test_broker_serves_until_sigterm(kind: str) -> None:
    with hil_cli("broker", "--port", "0", "--kind", kind) as (proc, line):
        match = re.search(rf"{kind} broker listening on mqtt://127\.0\.0\.1:(\d+)", line)
        assert match, line
        port = int(match.group(1))
        client = mqtt.Client(CallbackAPIVersion.VERSION2)
        assert client.connect("127.0.0.1", port) == mqtt.MQTT_ERR_SUCCESS
        client.disconnect()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not mqtt_ping("127.0.0.1", port, timeout=0.5)


def test_generic_modbus_faults_of_the_boiler_map_fire_for_a_client() -> None:
    """The faults of hil/maps/boiler.yaml sit where it maps no value; each one fires."""
    with hil_cli("sim", "modbus", "--map", str(ROOT / "hil/maps/boiler.yaml"),
                 "--port", "0") as (proc, line):
        match = re.search(r"listening on 127\.0\.0\.1:(\d+), unit 1, 12 values, 4 faults", line)
        assert match, line
        port = int(match.group(1))
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0, reconnect_delay=0)
        assert client.connect()
        try:
            missing = client.read_input_registers(40, count=2, device_id=1)
            assert missing.isError() and missing.exception_code == 2  # exception: 2
            started = time.monotonic()
            slow = client.read_holding_registers(200, count=4, device_id=1)
            assert time.monotonic() - started >= 2.0  # delay: 2s, then the answer
            assert not slow.isError() and slow.registers == [0, 0, 0, 0]
            short = client.read_input_registers(50, count=2, device_id=1)
            assert not short.isError() and len(short.registers) == 1  # garble: one short
            pressure = client.read_input_registers(0, count=2, device_id=1)
            value = client.convert_from_registers(pressure.registers,
                                                  data_type=client.DATATYPE.FLOAT32)
            assert 11.2 <= value <= 12.8  # 12 + 0.8 sin(...)
            with pytest.raises(ModbusException):  # drop_connection: no answer ...
                client.read_holding_registers(300, count=1, device_id=1)
            assert not client.connected  # ... the connection is closed
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_s7_plc_serves_until_sigint() -> None:
    """``sim s7`` as an S7-300 with PUT/GET off: pyS7 (an independent client) connects on
    slot 2, and its read is refused as a real CPU would; SIGINT ends it cleanly."""
    from pyS7 import ConnectionType, S7Client

    with hil_cli("sim", "s7", "--port", "0", "--cpu", "s7-300", "--put-get-off") as (proc, line):
        match = re.search(r"s7 s7-300 listening on 127\.0\.0\.1:(\d+) \(rack 0 slot 2, PDU 240",
                          line)
        assert match and "PUT/GET off" in line, line
        port = int(match.group(1))
        client = S7Client("127.0.0.1", 0, 2, connection_type=ConnectionType.S7Basic, port=port,
                          timeout=2.0)
        client.connect()
        try:
            # pyS7 does not read the error class; the 19-byte frame is the real CPU's
            with pytest.raises(Exception, match=r"response too short \(got 19 bytes"):
                client.read(["DB1,R0"])
        finally:
            client.disconnect()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert not port_is_open("127.0.0.1", port)
