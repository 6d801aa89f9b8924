"""gateway/listen_ports.py: one listener per port, shared by the devices of one protocol,
kept a while after the last device let go, closed when the runtime stops."""

from __future__ import annotations

import pytest

from gateway.errors import PortConflict
from gateway.listen_ports import ListenPorts, ListenUse
from tests.waiting import until


class _Listener:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def _use(device: str, protocol: str = "modbus_dtu", host: str = "0.0.0.0") -> ListenUse:
    return ListenUse(device, protocol, host)


async def test_devices_share_a_port_and_it_lingers_after_the_last() -> None:
    ports = ListenPorts(linger=0.05)
    made: list[_Listener] = []

    def make() -> _Listener:
        made.append(_Listener())
        return made[-1]

    a = ports.claim(9000, _use("a"), make)
    b = ports.claim(9000, _use("b"), make)
    assert a.listener is b.listener and len(made) == 1
    assert ports.users(9000) == ["a", "b"]
    a.release()
    b.release()
    b.release()  # a second release does nothing
    assert made[0].closed == 0  # lingers
    again = ports.claim(9000, _use("a"), make)  # a reconnecting driver gets the same one
    assert again.listener is made[0] and len(made) == 1
    again.release()
    await until(lambda: made[0].closed == 1, "closed after the linger")
    assert ports.users(9000) == []
    ports.claim(9000, _use("a"), make)
    assert len(made) == 2
    ports.close()
    assert made[1].closed == 1


async def test_another_protocol_or_address_on_the_port_is_refused() -> None:
    ports = ListenPorts()
    ports.claim(9000, _use("a"), _Listener)
    with pytest.raises(PortConflict, match="device 'a' \\(modbus_dtu\\); device 'x' "
                       "\\(other\\) cannot share it"):
        ports.claim(9000, _use("x", "other"), _Listener)
    with pytest.raises(PortConflict, match=r"opened on 0\.0\.0\.0 for device 'a'; device 'y' "
                       r"asks for 127\.0\.0\.1"):
        ports.claim(9000, _use("y", host="127.0.0.1"), _Listener)
    ports.close()


def test_without_a_loop_the_last_release_closes_at_once() -> None:
    ports = ListenPorts(linger=60)
    listener = _Listener()
    lease = ports.claim(9000, _use("a"), lambda: listener)
    lease.release()
    assert listener.closed == 1


async def test_close_cancels_the_linger() -> None:
    ports = ListenPorts(linger=60)
    listener = _Listener()
    ports.claim(9000, _use("a"), lambda: listener).release()
    timer = ports._ports[9000].closing
    assert timer is not None and listener.closed == 0
    ports.close()
    assert timer.cancelled() and listener.closed == 1
