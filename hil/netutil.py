"""Small socket helpers for simulated devices and test fixtures."""

from __future__ import annotations

import os
import random
import socket
import time

__all__ = ["PORT_RANGE_ENV", "free_port", "port_is_free", "port_is_open", "wait_for_port"]


#: "lo-hi": the ports free_port hands out (test runs with several workers set it per worker)
PORT_RANGE_ENV = "CHENXING_TEST_PORTS"


def free_port(host: str = "127.0.0.1", *, udp: bool = False) -> int:
    """Return a TCP port on ``host`` (and UDP too with ``udp``) that was free a moment ago.

    The kernel picks the port (bind to port 0); the socket is closed again so the caller
    can bind it. Another process may take it in between: callers that can bind port 0
    themselves should prefer that. When ``CHENXING_TEST_PORTS`` is ``lo-hi``, the port is
    taken from that range instead: a test run with several workers gives each a range of
    its own below the kernel's ephemeral ports, so the kernel cannot hand a port one
    worker was given to another process in between (tests/conftest.py).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    span = os.environ.get(PORT_RANGE_ENV, "")
    if span:
        lo, _, hi = span.partition("-")
        candidates = random.sample(range(int(lo), int(hi) + 1), int(hi) - int(lo) + 1)
    else:
        candidates = [0] * 100
    for candidate in candidates:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, candidate))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        if udp:
            with socket.socket(family, socket.SOCK_DGRAM) as dgram:
                try:
                    dgram.bind((host, port))
                except OSError:
                    continue
        return port
    raise OSError(f"no free port on {host}" + (f" in {span}" if span else ""))


def port_is_free(host: str, port: int) -> bool:
    """Return True when a server could bind ``host:port`` now (SO_REUSEADDR, like servers)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_is_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Return True when a TCP connection to ``host:port`` succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 5.0) -> None:
    """Block until ``host:port`` accepts TCP connections.

    Raises:
        TimeoutError: the port did not accept a connection within ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if port_is_open(host, port, timeout=min(0.5, max(timeout, 0.05))):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} did not accept connections within {timeout} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
