"""A real MQTT broker on a loopback port, for tests, HIL scenarios and the demo.

:class:`MqttBroker` runs Mosquitto (``mosquitto -c FILE``) as a subprocess with
a config file of its own in a temporary directory. When Mosquitto is not
installed it runs the embedded amqtt broker instead, also as a subprocess
(``python -c "from hil.broker import ..."``), so ``stop``/``restart``/``kill`` mean the same for
both. The API is synchronous (usable from pytest fixtures and a CLI); the async
context manager runs the blocking calls in a worker thread.

Usage::

    with MqttBroker() as broker:
        client.connect(broker.host, broker.port)
        broker.restart()  # same port
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self

from hil.netutil import free_port, port_is_free, port_is_open

__all__ = ["BrokerKind", "BrokerTls", "MqttBroker", "find_mosquitto", "mqtt_ping"]

log = logging.getLogger(__name__)

BrokerKind = Literal["auto", "mosquitto", "amqtt"]

_MOSQUITTO_FALLBACK_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
_REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """Files for a TLS listener (PEM). ``require_certificate`` makes it mutual TLS: clients
    must present a certificate signed by ``cafile``."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = False


def find_mosquitto() -> str | None:
    """Path of the ``mosquitto`` executable (PATH, then /usr/sbin), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in _MOSQUITTO_FALLBACK_PATHS:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass(slots=True)
class _Runtime:
    """What must be cleaned up even if the owner is garbage-collected."""

    workdir: Path
    owns_workdir: bool
    process: subprocess.Popen[bytes] | None = None
    output: IO[bytes] | None = None

    def terminate(self, sig: int, timeout: float) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        if self.output is not None:
            self.output.close()
            self.output = None

    def cleanup(self) -> None:
        self.terminate(signal.SIGKILL, 5.0)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class MqttBroker:
    """Mosquitto (or amqtt) on a loopback port that can be stopped, restarted and killed.

    Args:
        host: listen address.
        port: TCP port; ``0`` picks a free port at the first start and keeps it.
        kind: ``"auto"`` (Mosquitto if installed, else amqtt), ``"mosquitto"`` or ``"amqtt"``.
        persistence: Mosquitto keeps sessions and queued messages on disk across
            restarts (in the broker's working directory). Not supported by amqtt.
        workdir: directory for config, log and persistence files; default a new
            temporary directory removed by :meth:`close`.
        start_timeout: seconds to wait until the port accepts connections.
        mosquitto: path of the Mosquitto executable (default: :func:`find_mosquitto`).
        tls: serve MQTT over TLS on the listener (Mosquitto only); readiness is then
            checked with a TCP connect instead of an MQTT CONNECT.
        allow_anonymous: ``False`` refuses every client's CONNECT ("not authorised"; no
            password file): a broker that answers but does not let the gateway in
            (Mosquitto only).
        max_packet_size: Mosquitto closes the connection of a client that sends a larger
            packet (MQTT 3.1.1 has no way to say why; MQTT 5 announces the limit in
            CONNACK).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        kind: BrokerKind = "auto",
        persistence: bool = False,
        workdir: str | os.PathLike[str] | None = None,
        start_timeout: float = 10.0,
        mosquitto: str | None = None,
        tls: BrokerTls | None = None,
        allow_anonymous: bool = True,
        max_packet_size: int | None = None,
    ) -> None:
        exe = mosquitto or find_mosquitto()
        if kind == "auto":
            kind = "mosquitto" if exe else "amqtt"
        if kind == "mosquitto" and not exe:
            raise FileNotFoundError("mosquitto not found on PATH or in /usr/sbin")
        if kind not in ("mosquitto", "amqtt"):
            raise ValueError(f"unknown broker kind {kind!r}")
        if persistence and kind == "amqtt":
            raise ValueError("persistence is only supported with Mosquitto")
        if tls is not None and kind == "amqtt":
            raise ValueError("tls is only supported with Mosquitto")
        if not allow_anonymous and kind == "amqtt":
            raise ValueError("allow_anonymous=False is only supported with Mosquitto")
        if max_packet_size is not None and kind == "amqtt":
            raise ValueError("max_packet_size is only supported with Mosquitto")
        self.max_packet_size = max_packet_size
        self.tls = tls
        self.allow_anonymous = allow_anonymous
        self._kind: Literal["mosquitto", "amqtt"] = kind
        self._exe = exe
        self._host = host
        self._port = port
        self._fixed_port = port != 0
        self.persistence = persistence
        self.start_timeout = start_timeout
        owns = workdir is None
        path = Path(tempfile.mkdtemp(prefix=f"chenxing-{kind}-")) if owns else Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        self._rt = _Runtime(workdir=path, owns_workdir=owns)
        self._finalizer = weakref.finalize(self, self._rt.cleanup)

    # -- properties ----------------------------------------------------------

    @property
    def kind(self) -> Literal["mosquitto", "amqtt"]:
        """Which broker runs: ``"mosquitto"`` or ``"amqtt"``."""
        return self._kind

    @property
    def host(self) -> str:
        """Listen address."""
        return self._host

    @property
    def port(self) -> int:
        """Listen port (known after the first :meth:`start` when constructed with 0)."""
        if not self._port:
            raise RuntimeError("port not chosen yet: start() the broker first")
        return self._port

    @property
    def url(self) -> str:
        """``mqtt://host:port`` (``mqtts://`` with TLS)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self._host}:{self.port}"

    @property
    def workdir(self) -> Path:
        """Directory holding config, logs and persistence files."""
        return self._rt.workdir

    @property
    def config_path(self) -> Path:
        """The generated Mosquitto config file."""
        return self._rt.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        """The broker's log file."""
        return self._rt.workdir / f"{self._kind}.log"

    @property
    def pid(self) -> int | None:
        """Process id of the running broker."""
        proc = self._rt.process
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self.pid is not None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Self:
        """Start the broker and wait until it answers an MQTT CONNECT on its port."""
        if self.running:
            return self
        attempts = 1 if (self._fixed_port or self._port) else 3
        for attempt in range(attempts):
            if not self._port:
                self._port = free_port(self._host)
            try:
                self._spawn_and_wait()
            except RuntimeError:
                if attempt + 1 == attempts:
                    raise
                log.warning("broker did not start on port %d, trying another", self._port)
                self._port = 0
            else:
                break
        log.info("%s broker listening on %s (pid %s)", self._kind, self.url, self.pid)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker gracefully (SIGTERM, then SIGKILL after ``timeout``)."""
        if self._rt.process is not None:
            log.info("stopping %s broker on port %s", self._kind, self._port)
        self._rt.terminate(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Kill the broker abruptly (SIGKILL): no goodbyes, no persistence flush."""
        if self._rt.process is not None:
            log.info("killing %s broker on port %s", self._kind, self._port)
        self._rt.terminate(signal.SIGKILL, 5.0)

    def restart(self, downtime_s: float = 0.0) -> Self:
        """Stop, stay down ``downtime_s``, then start again on the same port."""
        self.stop()
        if downtime_s > 0:
            time.sleep(downtime_s)
        return self.start()

    def close(self) -> None:
        """Stop the broker and remove its temporary directory."""
        self.stop()
        self._finalizer()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)

    # -- internals -----------------------------------------------------------

    def _command(self) -> tuple[list[str], dict[str, str] | None]:
        if self._kind == "mosquitto":
            assert self._exe is not None
            self.config_path.write_text(self._mosquitto_config())
            return [self._exe, "-c", str(self.config_path)], None
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        cmd = [sys.executable, "-c", _AMQTT_CHILD, "--host", self._host,
               "--port", str(self._port), "--log-file", str(self.log_path)]  # fmt: skip
        return cmd, env

    def _mosquitto_config(self) -> str:
        lines = [
            "# generated by hil.broker.MqttBroker",
            f"listener {self._port} {self._host}",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            f"persistence {'true' if self.persistence else 'false'}",
        ]
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.cafile}",
                f"certfile {self.tls.certfile}",
                f"keyfile {self.tls.keyfile}",
                f"require_certificate {'true' if self.tls.require_certificate else 'false'}",
            ]
        if self.max_packet_size is not None:
            lines.append(f"max_packet_size {self.max_packet_size}")
        if self.persistence:
            lines += [f"persistence_location {self._rt.workdir}/", "autosave_interval 1"]
        lines += [
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp true",
            "connection_messages true",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # Mosquitto run as root drops to user "mosquitto", who could not write here.
            lines.append(f"user {getpass.getuser()}")
        return "\n".join(lines) + "\n"

    def _spawn_and_wait(self) -> None:
        if not port_is_free(self._host, self._port):
            raise RuntimeError(f"port {self._host}:{self._port} is in use")
        cmd, env = self._command()
        output = (self._rt.workdir / "process.out").open("ab")
        # a session of its own: a Ctrl-C at the terminal reaches the owner (the demo, a
        # test run), which stops the broker after the gateway has disconnected, not first
        proc = subprocess.Popen(
            cmd, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )  # fmt: skip
        self._rt.process, self._rt.output = proc, output
        deadline = time.monotonic() + self.start_timeout
        while True:
            if proc.poll() is not None:
                self._rt.terminate(signal.SIGKILL, 1.0)
                raise RuntimeError(
                    f"{self._kind} exited with code {proc.returncode} on port {self._port}:\n"
                    + self.log_tail()
                )
            # a TLS listener or one that refuses everybody: a TCP connect says it is up
            if (port_is_open(self._host, self._port)
                    if self.tls is not None or not self.allow_anonymous
                    else mqtt_ping(self._host, self._port)):
                return
            if time.monotonic() > deadline:
                self._rt.terminate(signal.SIGKILL, 1.0)
                raise RuntimeError(
                    f"{self._kind} did not accept connections on port {self._port} "
                    f"within {self.start_timeout} s:\n" + self.log_tail()
                )
            time.sleep(0.02)

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the broker's console output and log file, for error messages."""
        parts = []
        for path in (self._rt.workdir / "process.out", self.log_path):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace")[-chars:])
        return "\n".join(parts)


# MQTT 3.1.1 CONNECT, clean session, keepalive 10 s, empty client id; then DISCONNECT.
_PROBE_CONNECT = bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 10, 0, 0])
_PROBE_DISCONNECT = bytes([0xE0, 0])


def mqtt_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """Return True when an MQTT broker on ``host:port`` accepts a CONNECT now."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_PROBE_CONNECT)
            connack = b""
            while len(connack) < 4:
                chunk = sock.recv(4 - len(connack))
                if not chunk:
                    return False
                connack += chunk
            with contextlib.suppress(OSError):
                sock.sendall(_PROBE_DISCONNECT)
            return connack[0] == 0x20 and connack[3] == 0
    except OSError:
        return False


# --------------------------------------------------------------------------- #
# amqtt child process: python -c _AMQTT_CHILD --host H --port P --log-file F
# (not ``python -m hil.broker``: the package imports this module first)
# --------------------------------------------------------------------------- #

_AMQTT_CHILD = "from hil.broker import _amqtt_main; _amqtt_main()"


async def _serve_amqtt(host: str, port: int) -> None:
    """Run an anonymous amqtt broker on ``host:port`` until SIGTERM or SIGINT."""
    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {
            "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
        },
    }
    broker = Broker(config)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    started = time.monotonic()
    try:
        await asyncio.wait_for(broker.shutdown(), timeout=2.0)
    except TimeoutError:
        log.warning("amqtt shutdown did not finish within 2 s; exiting anyway")
    log.info("amqtt stopped in %.2f s", time.monotonic() - started)


def _amqtt_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hil.broker amqtt child", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-file")
    args = parser.parse_args(argv)
    logging.basicConfig(
        filename=args.log_file,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("transitions").setLevel(logging.WARNING)
    asyncio.run(_serve_amqtt(args.host, args.port))
