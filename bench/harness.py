"""What every benchmark in bench/ shares, so that each measures the same way.

- **The result file**: :class:`Run` stamps a run's start (UTC and the load average) and
  writes ``bench/results/<name>-<YYYYmmdd-HHMMSS>.json`` (UTC; git ignores the
  directory's ``*.json``) with the machine's facts: cores, CPU model, memory, Python,
  package versions, the git commit (and whether the tree had changes), the load
  average at the start and at the end.
- **Child processes**: :func:`spawn` starts a helper (simulator, subscriber, producer)
  in a session of its own, killed by the kernel if the bench dies even by SIGKILL
  (``PR_SET_PDEATHSIG``), its stderr in a log file; :class:`Child` reads its
  ``READY``-style lines with a deadline, and stops it (SIGTERM, then SIGKILL).
  :func:`start_hil_sim` starts a simulator of ``hil/`` that way and reads its banner.
  :class:`BenchBroker` is Mosquitto (``hil.broker.MqttBroker``) without per-client
  queue limits, so a lagging subscriber loses nothing to the broker.
- **/proc sampling**: a process's CPU time (all threads, its main thread, time spent
  waiting for a CPU) and RSS; the busy cores of the whole machine; :class:`CpuProbe`
  takes both over a window. :func:`self_cpu` is this process's own CPU time.
- **Medians and ratios**: :func:`abba_order` interleaves the sides of a comparison
  round by round; :func:`ratio_figures` gives ours ÷ raw as the ratio of the medians
  and as the median of each round's ratio (the pair ran back to back, so load that
  drifts over a run cancels better); :func:`percentiles`. The driver benches
  (southbound, S7, FINS, DL/T 645) time each side as a :class:`Measurement`
  (:func:`poll_driver` for a driver polling back to back), run them with
  :func:`paired_rounds` and report with :func:`summarise_pairs` and :func:`print_pairs`.
- **A bench's main**: :func:`bench_arguments` adds ``--out`` and ``-v``;
  :func:`run_async_bench` runs the measurement coroutine with the logging, the load at
  the start, a work directory, SIGTERM as Ctrl-C, the result file and the exit code.

Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime as dt
import json
import logging
import os
import platform
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from drivers.base import Driver
from gateway.errors import GatewayError
from gateway.types import Quality
from hil.broker import MqttBroker, find_mosquitto

log = logging.getLogger("bench.harness")

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

#: the packages whose versions every result records (others per bench)
PACKAGES: tuple[str, ...] = ("numpy", "paho-mqtt", "protobuf")

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


# --------------------------------------------------------------------------------------
# machine facts and the result file
# --------------------------------------------------------------------------------------


def package_version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages (runnable tasks, all processes)."""
    with open("/proc/loadavg", encoding="ascii") as fh:
        return [float(x) for x in fh.read().split()[:3]]


def git_state() -> dict[str, Any]:
    """The commit the benchmarked code is at, and whether tracked files had changes."""
    def git(*args: str) -> str | None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
            )
            if done.returncode == 0:
                return done.stdout.strip()
        return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def mosquitto_version() -> str | None:
    """``mosquitto -h``'s first line says the version (it exits 3 doing so)."""
    exe = find_mosquitto()
    if exe is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=5)
        match = re.search(r"version (\S+)", done.stdout + done.stderr)
        if match:
            return match.group(1)
    return None


def machine_info(packages: Sequence[str] = ()) -> dict[str, Any]:
    """The facts a figure depends on: cores, CPU, memory, Python, versions, the commit."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    names = dict.fromkeys((*PACKAGES, *packages))
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_mib": None if mem_kib is None else round(mem_kib / 1024),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: package_version(name) for name in names},
        "mosquitto": mosquitto_version(),
        "git": git_state(),
    }


def filesystem_of(path: Path) -> str | None:
    """The filesystem type ``path`` lives on (``tmpfs`` makes fsync free: not a disk)."""
    best, fstype = "", None
    target = str(path.resolve())
    with contextlib.suppress(OSError), open("/proc/mounts", encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) < 3:
                continue
            mount = parts[1]
            inside = target == mount or target.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best):
                best, fstype = mount, parts[2]
    return fstype


@dataclass(slots=True)
class Run:
    """One bench run: when it started, and how to write its result.

    The result document is ``{"benchmark", "started_at", "finished_at", "machine",
    **body}``; the machine part includes the load average at the start and the end (on
    a shared machine the figures mean little without it).
    """

    name: str
    packages: tuple[str, ...] = ()
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    load_at_start: list[float] = field(default_factory=load_average)

    def default_path(self) -> Path:
        return RESULTS_DIR / f"{self.name}-{self.started:%Y%m%d-%H%M%S}.json"

    def document(self, body: Mapping[str, Any]) -> dict[str, Any]:
        machine = machine_info(self.packages)
        machine["load_average_start"] = self.load_at_start
        machine["load_average_end"] = load_average()
        return {
            "benchmark": self.name,
            "started_at": self.started.isoformat(timespec="seconds"),
            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine,
            **body,
        }

    def save(self, document: Mapping[str, Any], out: Path | None = None) -> Path:
        """Write a :meth:`document` to ``out`` (default ``bench/results/<name>-<start>.json``)."""
        path = out or self.default_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
        return path

    def write(self, body: Mapping[str, Any], out: Path | None = None) -> Path:
        """Write the result of this run: :meth:`document` of ``body``, then :meth:`save`."""
        return self.save(self.document(body), out)


def load_note(load: Sequence[float]) -> str:
    """The load average for a printed header: 'load 1.23 / 0.98 / 0.70 (1/5/15 min)'."""
    return "load " + " / ".join(f"{x:.2f}" for x in load) + " (1/5/15 min)"


# --------------------------------------------------------------------------------------
# child processes
# --------------------------------------------------------------------------------------


def _child_setup(cpus: frozenset[int] | None) -> Callable[[], None]:
    def setup() -> None:
        # SIGKILL rather than SIGTERM: a gateway told to stop in the very moment its devices
        # vanish can hang in its shutdown, and nobody would be left to kill it
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


@dataclass(slots=True)
class Child:
    """A child process a bench started, with what is needed to talk to it and stop it."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path | None
    port: int = 0
    final_stats: dict[str, Any] = field(default_factory=dict)
    _buffer: bytes = b""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None:
            return ""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def read_line(self, timeout: float) -> str:
        """The next line of the child's stdout (a pipe), waiting at most ``timeout`` s."""
        assert self.popen.stdout is not None, f"{self.name}: stdout is not a pipe"
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"{self.name}: no answer within {timeout:g} s:\n"
                                   f"{self.log_tail()}")  # fmt: skip
            readable, _, _ = select.select([fd], [], [], min(remaining, 0.5))
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise RuntimeError(f"{self.name} exited ({self.popen.poll()}):\n"
                                       f"{self.log_tail()}")  # fmt: skip
                self._buffer += chunk
            elif not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n"
                                   f"{self.log_tail()}")  # fmt: skip
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace")

    def wait_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """Read lines until one matches ``pattern`` (``re.search``); fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.read_line(max(0.0, deadline - time.monotonic()))
            match = re.search(pattern, line)
            if match:
                return match
            log.debug("%s: %s", self.name, line)

    def write_line(self, text: str) -> None:
        assert self.popen.stdin is not None, f"{self.name}: stdin is not a pipe"
        self.popen.stdin.write(text.encode() + b"\n")
        self.popen.stdin.flush()

    def stop(self, timeout: float) -> int | None:
        """SIGTERM, wait ``timeout`` s, then SIGKILL. Returns the exit code."""
        proc = self.popen
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) did not stop in %.0f s: killing it",
                            self.name, proc.pid, timeout)  # fmt: skip
                proc.kill()
                proc.wait(timeout=5)
        return proc.returncode

    def rest_of_output(self) -> str:
        """What the child wrote to stdout and nobody read yet (call after it exited)."""
        rest = self._buffer
        self._buffer = b""
        if self.popen.stdout is not None:
            with contextlib.suppress(OSError, ValueError):
                rest += self.popen.stdout.read()
        return rest.decode(errors="replace")

    def close(self) -> None:
        """Close the pipes (after :meth:`stop`)."""
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def spawn(
    name: str,
    cmd: Sequence[str],
    log_path: Path | None,
    *,
    stdout_pipe: bool = False,
    stdin_pipe: bool = False,
    pass_fds: Sequence[int] = (),
    cpus: set[int] | frozenset[int] | None = None,
) -> Child:
    """Start ``cmd`` from the repository root in a session of its own (so that Ctrl-C reaches
    the bench only, which stops its children), killed with the bench even by SIGKILL,
    stderr (and stdout unless piped) appended to ``log_path`` (None: the bench's own).
    ``cpus`` pins it to those CPUs."""
    with contextlib.ExitStack() as stack:
        out: Any = None
        if log_path is not None:
            out = stack.enter_context(open(log_path, "ab"))
        popen = subprocess.Popen(
            list(cmd),
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else out,
            stderr=out,
            cwd=REPO_ROOT,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
            preexec_fn=_child_setup(frozenset(cpus) if cpus else None),
        )
    return Child(name, popen, log_path)


def start_modbus_bank(name: str, tags: int, workdir: Path) -> Child:
    """A simulated Modbus TCP device (``bench/modbus_bank_server.py``) holding ``tags`` tags;
    :func:`wait_modbus_bank` reads its port."""
    script = BENCH_DIR / "modbus_bank_server.py"
    return spawn(name, [sys.executable, str(script), "--tags", str(tags), "--host", HOST],
                 workdir / f"{name}.log", stdout_pipe=True)  # fmt: skip


def wait_modbus_bank(child: Child, deadline: float) -> None:
    """Read the simulator's ``READY <port>`` line."""
    timeout = max(0.0, deadline - time.monotonic())
    try:
        line = child.read_line(timeout)
    except RuntimeError as exc:
        raise RuntimeError(f"simulator {child.name} did not start: {exc}") from None
    match = re.fullmatch(r"READY (\d+)", line.strip())
    if not match:
        raise RuntimeError(f"simulator {child.name} said {line!r}, expected 'READY <port>'")
    child.port = int(match.group(1))


def start_hil_sim(
    name: str, args: Sequence[str], workdir: Path, banner: str, timeout: float = 60.0
) -> tuple[Child, re.Match[str]]:
    """A simulator of ``hil/`` (``chenxing-hil sim ARGS``) in a process of its own
    (:func:`spawn`, its log in ``workdir``), once a line of its stdout matches ``banner``
    (``re.search``): the match, e.g. the port it listens on. Stop it with ``Child.stop``."""
    cmd = [sys.executable, "-m", "hil.cli", "--log-level", "WARNING", "sim", *args]
    child = spawn(name, cmd, workdir / f"{name}.log", stdout_pipe=True)
    try:
        match = child.wait_line(banner, timeout)
    except RuntimeError as exc:
        child.stop(5.0)
        child.close()
        raise RuntimeError(f"simulator {name} did not start: {exc}") from None
    return child, match


def stop_modbus_bank(child: Child) -> None:
    """Stop a simulated device and keep the request counts it printed on its way out."""
    child.stop(timeout=5.0)
    for line in child.rest_of_output().splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                child.final_stats = json.loads(line)
    child.close()


class BenchBroker(MqttBroker):
    """Mosquitto with no per-client queue limit: a lagging subscriber must not lose messages
    (the default drops QoS 1 past 1,000 queued), or a loss check would lie. ``cpus``: the
    CPUs it runs on, set again at every start."""

    def __init__(self, *args: Any, cpus: set[int] | None = None, **kw: Any) -> None:
        kw.setdefault("host", HOST)
        kw.setdefault("kind", "mosquitto")  # FileNotFoundError without Mosquitto
        super().__init__(*args, **kw)
        self.cpus = cpus

    def _mosquitto_config(self) -> str:
        return super()._mosquitto_config() + "max_queued_messages 0\nmax_queued_bytes 0\n"

    def start(self) -> BenchBroker:
        super().start()
        if self.cpus and self.pid:
            os.sched_setaffinity(self.pid, self.cpus)
        return self


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so that a bench's cleanup always runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------------------
# /proc sampling
# --------------------------------------------------------------------------------------


def self_cpu() -> float:
    """CPU seconds (user + system, all threads) of this process so far."""
    t = os.times()
    return t.user + t.system


@dataclass(frozen=True, slots=True)
class ProcTimes:
    """CPU accounting of one process (all its threads), in seconds."""

    user: float = 0.0
    system: float = 0.0
    #: CPU time of the main thread alone (for the gateway: its asyncio event loop)
    main_thread: float = 0.0
    #: time its threads were runnable but waited for a CPU (from /proc/PID/task/*/schedstat)
    run_queue_wait: float = 0.0
    #: the same for the main thread alone
    main_thread_wait: float = 0.0

    @property
    def cpu(self) -> float:
        return self.user + self.system

    def __sub__(self, other: ProcTimes) -> ProcTimes:
        return ProcTimes(
            self.user - other.user,
            self.system - other.system,
            self.main_thread - other.main_thread,
            self.run_queue_wait - other.run_queue_wait,
            self.main_thread_wait - other.main_thread_wait,
        )


def _stat_times(path: str) -> tuple[float, float]:
    with open(path, encoding="ascii") as fh:
        stat = fh.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return int(fields[11]) / _CLOCK_TICKS, int(fields[12]) / _CLOCK_TICKS


def proc_times(pid: int) -> ProcTimes:
    """CPU times of a process from /proc (utime and stime include every thread)."""
    user, system = _stat_times(f"/proc/{pid}/stat")
    main_user, main_system = _stat_times(f"/proc/{pid}/task/{pid}/stat")
    wait_ns = main_wait_ns = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            path = f"/proc/{pid}/task/{tid}/schedstat"
            with contextlib.suppress(OSError, ValueError, IndexError), open(path) as fh:
                ns = int(fh.read().split()[1])
                wait_ns += ns
                if tid == str(pid):
                    main_wait_ns = ns
    return ProcTimes(user, system, main_user + main_system, wait_ns / 1e9, main_wait_ns / 1e9)


def proc_status_kib(pid: int, key: str) -> int | None:
    """A ``kB`` field of /proc/PID/status, e.g. ``VmHWM`` (peak RSS) or ``VmRSS``."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as fh:
        parts = [int(x) for x in fh.readline().split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    total = sum(parts[:8])  # guest time is already in user
    return (total - idle) / _CLOCK_TICKS, total / _CLOCK_TICKS


@dataclass(slots=True)
class CpuProbe:
    """CPU times of a set of processes and the busy cores of the machine between two points."""

    pids: dict[str, int]
    _start: dict[str, ProcTimes] = field(default_factory=dict)
    _machine: tuple[float, float] = (0.0, 0.0)
    _wall: float = 0.0

    def _snapshot(self) -> dict[str, ProcTimes]:
        out = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                out[name] = proc_times(pid)
        return out

    def begin(self) -> None:
        self._start = self._snapshot()
        self._machine = machine_busy_seconds()
        self._wall = time.monotonic()

    def end(self) -> tuple[float, dict[str, ProcTimes], float]:
        """(wall seconds, CPU times per process over the interval, busy cores of the machine)."""
        now = self._snapshot()
        busy, total = machine_busy_seconds()
        wall = time.monotonic() - self._wall
        d_busy, d_total = busy - self._machine[0], total - self._machine[1]
        machine_cores = (os.cpu_count() or 1) * d_busy / d_total if d_total > 0 else 0.0
        times = {k: now[k] - self._start[k] for k in now if k in self._start}
        return wall, times, machine_cores


# --------------------------------------------------------------------------------------
# medians and ratios
# --------------------------------------------------------------------------------------


def abba_order(sides: Sequence[str], round_no: int) -> list[str]:
    """ABBA interleaving: odd rounds run the sides in reverse order, so that neither side
    always runs first (after a broker restart, a warm cache, another side's backlog)."""
    return list(sides) if round_no % 2 == 0 else list(reversed(sides))


def round_ratios(ours: Mapping[int, float], base: Mapping[int, float]) -> list[float]:
    """ours ÷ base for every round both have (rates keyed by round number)."""
    return [ours[r] / base[r] for r in sorted(ours) if base.get(r)]


def ratio_figures(ours: Mapping[int, float], base: Mapping[int, float]) -> dict[str, float | None]:
    """ours ÷ base as the ratio of the medians and as the median of each round's ratio.

    The second is the one to judge by: each round's pair ran back to back, so a load that
    drifts over a run (other jobs on a shared machine) cancels out better."""
    ours_med = statistics.median(ours.values()) if ours else None
    base_med = statistics.median(base.values()) if base else None
    per_round = round_ratios(ours, base)
    return {
        "ratio_of_medians": round(ours_med / base_med, 3)
        if ours_med is not None and base_med else None,
        "median_of_round_ratios": round(statistics.median(per_round), 3) if per_round else None,
    }


def percentiles(samples: Sequence[np.ndarray]) -> dict[str, float | None]:
    """p50, p99, max, min and mean over the concatenated arrays (None when empty)."""
    arrays = [a for a in samples if len(a)]
    if not arrays:
        return {"p50": None, "p99": None, "max": None, "min": None, "mean": None}
    values = np.concatenate(arrays)
    p50, p99 = np.percentile(values, [50, 99])
    return {
        "p50": round(float(p50), 1),
        "p99": round(float(p99), 1),
        "max": round(float(values.max()), 1),
        "min": round(float(values.min()), 1),
        "mean": round(float(values.mean()), 1),
    }


# --------------------------------------------------------------------------------------
# paired comparisons: a driver against a bare client on the same simulated device
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class Measurement:
    """One timed window of one side of a comparison (``ours``, ``raw``, ...)."""

    side: str
    #: what was counted: values read, notifications, requests (the bench says which)
    values: int
    seconds: float
    #: this process's CPU (the client side), user + system
    cpu_seconds: float
    requests: int = 0
    #: samples whose quality is not good (ours only)
    bad: int = 0
    round: int = 0

    @property
    def rate(self) -> float:
        return self.values / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_1000(self) -> float:
        return self.cpu_seconds / self.values * 1e6 if self.values else float("nan")


if int(Quality.GOOD) != 0:  # pragma: no cover - not_good counts on it
    raise RuntimeError("Quality.GOOD is no longer 0: bench/harness.py's not_good must change")


def not_good(quality: np.ndarray) -> int:
    """Samples of a batch whose quality is not GOOD (0): the non-zero ones. Comparing the
    array with the ``Quality`` member itself takes NumPy's slow path for an IntEnum (about
    35 µs for 2,000 samples on the 2-core machine, against 2.5 µs): bookkeeping of the bench
    that the driver side must not be charged for."""
    return int(np.count_nonzero(quality))


async def poll_driver(driver: Driver, seconds: float, requests_per_poll: int) -> Measurement:
    """``ours``: a connected driver polling all its groups back to back for ``seconds``
    (values: the samples read; requests: the polls times ``requests_per_poll``). Closes it."""
    try:
        groups = driver.poll_groups()
        values = polls = bad = 0
        cpu0, began = self_cpu(), time.perf_counter()
        end = began + seconds
        while time.perf_counter() < end:
            for group in groups:
                batch = await driver.read(group)
                values += len(batch.tag_ids)
                bad += not_good(batch.quality)
            polls += 1
        elapsed, cpu = time.perf_counter() - began, self_cpu() - cpu0
    finally:
        await driver.close()
    return Measurement("ours", values, elapsed, cpu, polls * requests_per_poll, bad)


async def paired_rounds(
    sides: Mapping[str, Callable[[], Awaitable[Measurement]]], rounds: int
) -> list[Measurement]:
    """Run every side ``rounds`` times in ABBA order (:func:`abba_order`)."""
    out: list[Measurement] = []
    for r in range(rounds):
        for side in abba_order(list(sides), r):
            m = await sides[side]()
            m.round = r
            log.info("round %d %s: %.0f/s, %.2f ms CPU / 1,000", r + 1, side, m.rate,
                     m.cpu_ms_per_1000)  # fmt: skip
            out.append(m)
    return out


def summarise_pairs(measurements: Sequence[Measurement]) -> dict[str, Any]:
    """Per side: the median rate, the rounds' rates, the median client CPU per 1,000 values;
    per other side: ``ours`` ÷ it as :func:`ratio_figures` (``ratios``: of the medians;
    ``paired_ratios``: the median of each round's ratio, the one to judge by) and as values
    per client CPU second (``cpu_ratios``: what a saturated client core would carry)."""
    by_side: dict[str, list[Measurement]] = {}
    for m in measurements:
        by_side.setdefault(m.side, []).append(m)
    sides = {
        side: {
            "rate_median": statistics.median(m.rate for m in ms),
            "rates": [round(m.rate, 1) for m in ms],
            "cpu_ms_per_1000_median": statistics.median(m.cpu_ms_per_1000 for m in ms),
            "requests_per_s_median": statistics.median(m.requests / m.seconds for m in ms),
            "non_good": sum(m.bad for m in ms),
        }
        for side, ms in by_side.items()
    }
    ours = {m.round: m.rate for m in by_side["ours"]}
    figures = {
        f"ours/{side}": ratio_figures(ours, {m.round: m.rate for m in ms})
        for side, ms in by_side.items()
        if side != "ours"
    }
    nan = float("nan")
    capacity = {side: 1e6 / s["cpu_ms_per_1000_median"] for side, s in sides.items()}
    return {
        "sides": sides,
        "ratios": {name: f["ratio_of_medians"] or nan for name, f in figures.items()},
        "paired_ratios": {name: f["median_of_round_ratios"] or nan for name, f in figures.items()},
        "values_per_cpu_second": capacity,
        "cpu_ratios": {
            f"ours/{side}": capacity["ours"] / c for side, c in capacity.items() if side != "ours"
        },
        "measurements": [asdict(m) | {"rate": m.rate} for m in measurements],
    }


def print_pairs(title: str, unit: str, summary: Mapping[str, Any], goal: float) -> None:
    """The table of :func:`summarise_pairs`: rates, CPU, ratios against ``goal``."""
    print(f"\n{title}")
    print(f"  {'side':<12} {unit + ' (median)':>22} {'CPU ms/1,000':>14}  rounds")
    for side, s in summary["sides"].items():
        rates = ", ".join(f"{r:,.0f}" for r in s["rates"])
        print(f"  {side:<12} {s['rate_median']:>22,.0f} {s['cpu_ms_per_1000_median']:>14.2f}"
              f"  [{rates}]")  # fmt: skip
    for name, ratio in summary["ratios"].items():
        paired = summary["paired_ratios"][name]
        verdict = "met" if paired >= goal else "NOT met"
        print(f"  ratio {name}: {ratio:.3f} of medians, {paired:.3f} median of rounds "
              f"(goal >= {goal}: {verdict}); per client CPU second: "
              f"{summary['cpu_ratios'][name]:.3f}")  # fmt: skip


# --------------------------------------------------------------------------------------
# a bench's main
# --------------------------------------------------------------------------------------


def bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options every bench run through :func:`run_async_bench` takes."""
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON result (default bench/results/<bench>-<timestamp>.json)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return parser


def parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The command line's options as the result's ``parameters``."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def run_async_bench(
    name: str,
    args: argparse.Namespace,
    body: Callable[[Path], Coroutine[Any, Any, Mapping[str, Any]]],
    packages: tuple[str, ...] = (),
    quiet: Sequence[str] = (),
) -> int:
    """Run ``body(workdir)`` (a temporary directory) on an event loop and write its figures
    with ``parameters`` and the machine's facts (:class:`Run`). Logging at INFO with
    ``-v`` (the loggers named in ``quiet`` at ERROR); the load average is printed first.
    Returns the exit code: 0; 1 when the run failed (a RuntimeError or an error of the
    project's hierarchy, its text printed, nothing written) or when the figures it
    returned list parts that ``failed`` (written with the rest); 130 when interrupted
    (Ctrl-C or SIGTERM, the children stopped either way)."""
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    for noisy in quiet:
        logging.getLogger(noisy).setLevel(logging.ERROR)
    bench = Run(name, packages=packages)
    print(f"{name}: {load_note(bench.load_at_start)} at the start")
    try:
        with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            figures = asyncio.run(body(Path(tmp)))
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, GatewayError) as exc:
        print(f"{name} benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(f"\nwritten {bench.write({'parameters': parameters(args), **figures}, args.out)}")
    if figures.get("failed"):
        print(f"{name}: failed: {'; '.join(figures['failed'])}", file=sys.stderr)
        return 1
    return 0
