"""Free-port and wait-for-port helpers."""

from __future__ import annotations

import socket
import threading

import pytest

from hil import netutil
from hil.netutil import free_port, port_is_free, port_is_open, wait_for_port
from tests.waiting import wait_until


def test_free_port_can_be_bound() -> None:
    port = free_port()
    assert 1024 <= port < 65536
    assert port_is_free("127.0.0.1", port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_port_states() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert port_is_open("127.0.0.1", port)
        assert not port_is_free("127.0.0.1", port)
        wait_for_port("127.0.0.1", port, timeout=1.0)
    assert not port_is_open("127.0.0.1", port)


class StepClock:
    """Stands in for ``time`` inside hil.netutil: its sleeps move the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def counting_tries(monkeypatch: pytest.MonkeyPatch, clock: StepClock | None = None
                   ) -> list[tuple[float, bool]]:  # fmt: skip
    """(clock, result) of each real connection attempt wait_for_port makes."""
    tries: list[tuple[float, bool]] = []

    def attempt(host: str, port: int, timeout: float = 0.2) -> bool:
        result = port_is_open(host, port, timeout)
        tries.append((clock.now if clock else 0.0, result))
        return result

    monkeypatch.setattr(netutil, "port_is_open", attempt)
    return tries


def test_wait_for_port_waits_for_a_late_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    """The listener comes only after two refused tries; wait_for_port keeps trying and
    returns on the first that connects."""
    tries = counting_tries(monkeypatch)
    port = free_port()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def listen_later() -> None:
        wait_until(lambda: len(tries) >= 2, "two refused tries")
        server.bind(("127.0.0.1", port))
        server.listen()

    thread = threading.Thread(target=listen_later)
    thread.start()
    try:
        wait_for_port("127.0.0.1", port, timeout=30.0)
    finally:
        thread.join()
        server.close()
    results = [ok for _, ok in tries]
    assert results[-1] is True and not any(results[:-1]) and len(results) >= 3


def test_wait_for_port_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """It tries, sleeping 0.01 s doubling up to 0.1 s in between, until its clock passed the
    timeout: on the test's clock, the tries and the give-up are exact."""
    clock = StepClock()
    monkeypatch.setattr(netutil, "time", clock)  # netutil's reference to time only
    tries = counting_tries(monkeypatch, clock)
    with pytest.raises(TimeoutError, match=r"within 0\.3 s"):
        wait_for_port("127.0.0.1", free_port(), timeout=0.3)
    assert [round(t, 6) for t, _ in tries] == [0.0, 0.01, 0.03, 0.07, 0.15, 0.25, 0.35]
    assert not any(ok for _, ok in tries)
