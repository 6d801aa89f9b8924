"""VictoriaMetrics (Debian's ``victoria-metrics``) as a stand-in InfluxDB v2 write API.

It accepts ``POST /api/v2/write`` (line protocol; ``{measurement}_{field}`` becomes the
metric name, tags become labels) and is read back with ``/api/v1/export``. Started on a
free loopback port with a temporary data folder; :meth:`stop` and :meth:`start` keep
both, so a test can take it away and bring it back with the data it had.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from hil.netutil import free_port

__all__ = ["VictoriaMetrics", "find_victoria_metrics"]


def find_victoria_metrics() -> str | None:
    return shutil.which("victoria-metrics") or (
        "/usr/bin/victoria-metrics" if Path("/usr/bin/victoria-metrics").exists() else None
    )


class VictoriaMetrics:
    def __init__(self, exe: str | None = None, start_timeout: float = 20.0) -> None:
        found = exe or find_victoria_metrics()
        if found is None:
            raise FileNotFoundError("victoria-metrics is not installed (apt-get install "
                                    "victoria-metrics)")  # fmt: skip
        self.exe = found
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="chenxing-vm-"))
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running store (a bench reads its CPU time from /proc)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> VictoriaMetrics:
        self._log = (self.workdir / "vm.log").open("ab")
        self._proc = subprocess.Popen(
            [self.exe, f"-storageDataPath={self.workdir / 'data'}",
             f"-httpListenAddr=127.0.0.1:{self.port}", "-search.latencyOffset=0",
             "-retentionPeriod=100y", "-search.disableCache"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"victoria-metrics exited: {self.log_tail()}")
            try:
                if self._get("/health") == b"OK":
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"victoria-metrics not ready on {self.url}: {self.log_tail()}")

    def stop(self) -> None:
        """Stop gracefully. Pending rows are flushed first: a quick stop right after the
        first writes was seen to lose them (a VictoriaMetrics quirk, not the sink's)."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(OSError):
                self._get("/internal/force_flush")
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> VictoriaMetrics:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, chars: int = 2000) -> str:
        path = self.workdir / "vm.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # --- reading back ------------------------------------------------------------------
    def _get(self, path: str, timeout: float = 5.0) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return bytes(response.read())

    def export(self, match: str = '{__name__=~".+"}') -> list[dict[str, Any]]:
        """Every series matching ``match`` with its values and timestamps (flushed first).

        New series become visible up to a second or two after their first write (their
        index entries are registered in the background): poll, see :meth:`wait_for`."""
        self._get("/internal/force_flush")
        query = urllib.parse.urlencode({"match[]": match})
        body = self._get(f"/api/v1/export?{query}", timeout=30)
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def points(self, match: str = '{__name__=~".+"}') -> dict[tuple[str, ...], dict[int, float]]:
        """``{(metric name, label=value, …): {timestamp: value}}``: duplicates collapse."""
        series: dict[tuple[str, ...], dict[int, float]] = {}
        for row in self.export(match):
            metric = dict(row["metric"])
            key = (metric.pop("__name__"), *(f"{k}={v}" for k, v in sorted(metric.items())))
            series.setdefault(key, {}).update(
                zip(row["timestamps"], row["values"], strict=True)
            )
        return series

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
        """Poll ``predicate`` (which reads back) until it holds or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.25)
        return True
