"""Free-port and wait-for-port helpers."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from hil.netutil import free_port, port_is_free, port_is_open, wait_for_port


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


def test_wait_for_port_waits_for_a_late_listener() -> None:
    port = free_port()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def listen_later() -> None:
        time.sleep(0.3)
        server.bind(("127.0.0.1", port))
        server.listen()

    thread = threading.Thread(target=listen_later)
    started = time.monotonic()
    thread.start()
    try:
        wait_for_port("127.0.0.1", port, timeout=5.0)
        assert time.monotonic() - started >= 0.25
    finally:
        thread.join()
        server.close()


def test_wait_for_port_times_out() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", port, timeout=0.3)
    assert time.monotonic() - started < 2.0
