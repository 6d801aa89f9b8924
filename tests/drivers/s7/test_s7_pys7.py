"""A second opinion: pyS7, an independent S7comm client (its own TPKT/COTP, PDU
negotiation and read-var code), reads the simulator, and the values agree with the
driver's and with the golden cases. Never the verdict alone: the golden bytes come from
struct and datetime (test_s7_codec.py)."""

from __future__ import annotations

import asyncio
import math

from pyS7 import ConnectionType, S7Client

from drivers.s7.driver import S7Driver
from hil.devices.s7_plc import S7PlcSimulator
from tests.drivers.s7.s7_golden import load_value_case

#: golden tag -> the same value in pyS7's address syntax
PYS7_ADDRESSES = {
    "numbers": {"byte": "DB1,B1", "sint": "DB1,SI3", "word": "DB1,W4", "int_min": "DB1,I8",
                "dword": "DB1,DW10", "dint_min": "DB1,DI18", "real": "DB1,R22",
                "lreal": "DB1,LR58", "bit0": "DB1,X0.0", "bit1": "DB1,X0.1",
                "int_far": "DB1,I70"},
    "strings": {"latin": "DB2,S0.10", "wide": "DB2,WS46.6"},
    "areas": {"m_int": "MI10", "m_real": "MR12", "m_bit": "M0.7", "input_1": "I0.1",
              "output_word": "QW2"},
}


def _pys7_read(port: int, addresses: list[str]) -> list[object]:
    client = S7Client("127.0.0.1", 0, 1, connection_type=ConnectionType.S7Basic, port=port,
                      timeout=2.0)
    client.connect()
    try:
        return list(client.read(addresses))
    finally:
        client.disconnect()


async def test_pys7_and_the_driver_read_the_same_values() -> None:
    for case_name, mapping in (("db_numbers", PYS7_ADDRESSES["numbers"]),
                               ("strings", PYS7_ADDRESSES["strings"]),
                               ("areas", PYS7_ADDRESSES["areas"])):
        case = load_value_case(case_name)
        async with S7PlcSimulator(port=0, use_model=False, memory=case.memory) as sim:
            other = await asyncio.to_thread(_pys7_read, sim.port, list(mapping.values()))
            driver = S7Driver(case.device_at("127.0.0.1", sim.port),
                              list(range(1, len(case.device.tags) + 1)))
            await driver.connect()
            ours: dict[str, object] = {}
            for group in driver.poll_groups():
                batch = await driver.read(group)
                for i, tag_id in enumerate(batch.tag_ids.tolist()):
                    ours[case.device.tags[tag_id - 1].name] = batch.values[i]
            await driver.close()
        for (name, _), theirs in zip(mapping.items(), other, strict=True):
            mine = ours[name]
            if isinstance(theirs, bool):
                assert mine == float(theirs), name
            elif isinstance(theirs, float) and math.isnan(theirs):
                assert math.isnan(mine), name  # type: ignore[arg-type]
            else:
                assert mine == theirs, (case_name, name, mine, theirs)


async def test_pys7_reads_the_process_values_the_driver_reads() -> None:
    """The live machine in DB1: both clients see the part counter and the state text."""
    async with S7PlcSimulator(port=0) as sim:
        parts, state = await asyncio.to_thread(_pys7_read, sim.port, ["DB1,DI16", "DB1,S24.16"])
        assert isinstance(parts, int) and parts >= 0
        assert state in ("CLOSING", "INJECTING", "HOLDING", "COOLING", "OPENING", "EJECTING")
