"""One supervised task per device: connect, poll, reconnect, restart after a crash.

The runner owns everything that is not protocol: scheduling of poll groups at a
fixed rate, reconnect with backoff and jitter, bad quality while the device is
away, and restart with backoff when the driver raises something unexpected. A
failure here never reaches another device or the northbound.

A connection counts as working once it delivered a usable value (good or uncertain):
only then does the reconnect backoff start again from its first step. A device that
accepts every connection and breaks it with garbage (a hostile or broken peer) is thus
reconnected ever more slowly, and its losses are logged as the first plus a summary a
minute (gateway/repeated_log.py), not one WARNING per reconnect.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from drivers.base import Driver, PollGroup
from gateway.backoff import Backoff
from gateway.errors import ConnectionLost, DriverError
from gateway.histogram import POLL_BUCKETS, Histogram
from gateway.repeated_log import RepeatedLog
from gateway.types import UNCERTAIN_CODE, Quality, SampleBatch, now_ns

log = logging.getLogger(__name__)

Sink = Callable[[SampleBatch], None]


class DeviceState(enum.StrEnum):
    STARTING = "starting"
    UP = "up"
    DOWN = "down"
    STOPPED = "stopped"


@dataclass(slots=True)
class DeviceStats:
    state: DeviceState = DeviceState.STARTING
    since_ns: int = field(default_factory=now_ns)
    last_error: str | None = None
    polls: int = 0
    samples_read: int = 0
    bad_samples: int = 0
    overruns: int = 0
    connects: int = 0
    connect_failures: int = 0
    connection_losses: int = 0
    crashes: int = 0
    #: wall-clock ns when a batch last brought a usable (good or uncertain) value; 0: never
    last_success_ns: int = 0
    #: seconds each poll took (the driver's read), per poll group
    poll_seconds: dict[str, Histogram] = field(default_factory=dict)


class DeviceRunner:
    #: seconds of running after which a crash no longer counts as part of a crash loop
    STABLE_AFTER = 60.0

    def __init__(
        self,
        name: str,
        driver_factory: Callable[[], Driver],
        sink: Sink,
        on_state_change: Callable[[str, DeviceState], None] = lambda _n, _s: None,
        reconnect: Backoff | None = None,
        crash_restart: Backoff | None = None,
        start_after: float = 0.0,
        connect_slots: asyncio.Semaphore | None = None,
    ) -> None:
        """``start_after``: seconds to wait before the first connect (the gateway staggers
        its devices, so that their polls do not all fall on the same instant);
        ``connect_slots``: shared by the devices of a gateway, bounds the connects in
        progress at once (a connect storm of thousands of devices times them out)."""
        self.name = name
        self._start_after = start_after
        self._connect_slots = connect_slots
        self.stats = DeviceStats()
        self.driver: Driver | None = None
        self._driver_factory = driver_factory
        self._sink = sink
        self._on_state_change = on_state_change
        self._reconnect = reconnect or Backoff(initial=0.5, maximum=10.0)
        self._crash_restart = crash_restart or Backoff(initial=1.0, maximum=60.0)
        self._errors_so_far: Counter[str] = Counter()
        self._losses = RepeatedLog(log, f"device {name}: connection lost", logging.WARNING)
        self._proving = False  # connected, no usable value yet on this connection
        #: connected and a usable value (good or uncertain) came on this connection: what a
        #: live config change waits for (gateway/runtime/config_apply.py)
        self.delivering = False

    def prepare(self) -> None:
        """Build the driver now (its request plans), before any device connects: built in
        each device's task instead, 2,000 plans held the event loop for seconds while
        the first devices' connects timed out. A failure is left to :meth:`run`."""
        if self.driver is None:
            try:
                self.driver = self._driver_factory()
            except Exception:  # run() builds it again, and logs and counts the failure
                self.driver = None

    def carry_errors(self, errors: Counter[str]) -> None:
        """Start the error counters from a previous runner's (a restart after a reload)."""
        self._errors_so_far.update(errors)

    # --- state ------------------------------------------------------------------------
    def _set_state(self, state: DeviceState, error: str | None = None) -> None:
        if state is not DeviceState.UP:
            self.delivering = False
        if error is not None:
            self.stats.last_error = error
        if state is not self.stats.state:
            self.stats.state = state
            self.stats.since_ns = now_ns()
            self._on_state_change(self.name, state)

    def _mark_all(self, quality: Quality) -> None:
        """Publish every tag of the device with ``quality`` and no value."""
        if self.driver is None or not self.driver.tag_ids:
            return
        ids = self.driver.tag_ids
        self._sink(SampleBatch.of(ids, np.full(len(ids), np.nan), now_ns(), quality))

    # --- supervision ------------------------------------------------------------------
    async def run(self) -> None:
        """Run until cancelled. Unexpected exceptions are logged, counted and restarted."""
        try:
            if self._start_after > 0:
                await asyncio.sleep(self._start_after)
            while True:
                started = asyncio.get_running_loop().time()
                try:
                    await self._connect_and_poll()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug in a driver must not stop the gateway
                    self.stats.crashes += 1
                    log.exception(
                        "device %s: task crashed (%d so far); restarting",
                        self.name,
                        self.stats.crashes,
                    )
                    self._set_state(DeviceState.DOWN, f"internal error: {exc!r}")
                    self._mark_all(Quality.BAD)
                    await self._close_driver()
                    self._discard_driver()
                    if asyncio.get_running_loop().time() - started > self.STABLE_AFTER:
                        self._crash_restart.reset()  # it ran well for a while: not a crash loop
                    await self._crash_restart.sleep()
        finally:
            await self._close_driver()
            self._losses.due(force=True)
            self._set_state(DeviceState.STOPPED)

    async def _close_driver(self) -> None:
        if self.driver is not None:
            try:
                await self.driver.close()
            except Exception:  # close must not raise; if it does, log and carry on
                log.exception("device %s: error while closing", self.name)

    def _discard_driver(self) -> None:
        """After a crash the driver's state is suspect: the next attempt builds a new one."""
        self._errors_so_far = self.driver.errors if self.driver is not None else self._errors_so_far
        self.driver = None

    async def _connect_and_poll(self) -> None:
        if self.driver is None:
            self.driver = self._driver_factory()
            self.driver.errors.update(self._errors_so_far)  # counters never go backwards
            self._errors_so_far = Counter()
        driver = self.driver
        away_quality = Quality.BAD  # until a connection is lost: then the driver's choice
        while True:
            try:
                if self._connect_slots is None:
                    await driver.connect()
                else:
                    async with self._connect_slots:
                        await driver.connect()
                _honour_cancel()
            except DriverError as exc:
                self.stats.connect_failures += 1
                delay = self._reconnect.next_delay()
                if self.stats.state is not DeviceState.DOWN:
                    log.warning(
                        "device %s: cannot connect: %s (retrying with backoff)", self.name, exc
                    )
                else:
                    log.debug(
                        "device %s: still unreachable: %s; next try in %.1fs", self.name, exc, delay
                    )
                self._set_state(DeviceState.DOWN, str(exc))
                self._mark_all(away_quality)
                self._losses.due()  # losses counted before it became unreachable
                await asyncio.sleep(delay)
                continue
            self.stats.connects += 1
            self._proving = True  # the backoff restarts once a value came (_emit)
            level = logging.DEBUG if self._losses.failing else logging.INFO
            log.log(level, "device %s: connected", self.name)
            self._set_state(DeviceState.UP)
            try:
                await self._poll_all(driver)
            except ConnectionLost as exc:
                self.stats.connection_losses += 1
                self._losses.failure(f"{exc}; reconnecting", key=str(exc))
                self._set_state(DeviceState.DOWN, str(exc))
                away_quality = driver.quality_while_lost
                self._mark_all(away_quality)
                await self._close_driver()
                await asyncio.sleep(self._reconnect.next_delay())

    async def _poll_all(self, driver: Driver) -> None:
        """Run every poll group (or the subscription) until one of them fails.

        Plain tasks and ``asyncio.wait`` rather than a TaskGroup: on Python 3.11 a
        TaskGroup whose child fails while the parent is being cancelled raises the
        child's error and loses the cancellation, so a device that lost its link at
        the moment of shutdown would go on reconnecting for ever.
        """
        groups = driver.poll_groups()
        if groups:
            coros = [self._poll_group(driver, g) for g in groups]
            names = [f"{self.name}/{g.name}" for g in groups]
        else:
            coros = [driver.subscribe(self._emit)]
            names = [f"{self.name}/subscription"]
        tasks = [asyncio.create_task(c, name=n) for c, n in zip(coros, names, strict=True)]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        for task in done:
            exc = task.exception()
            if exc is not None:
                raise exc

    def _emit(self, batch: SampleBatch) -> None:
        quality = batch.quality
        self.stats.samples_read += len(quality)
        # GOOD is 0: what is not zero is not good (an array compared costs 4x counting it)
        self.stats.bad_samples += int(np.count_nonzero(quality))
        usable = len(quality) > 0 and bool(quality.min() <= UNCERTAIN_CODE)
        if usable:
            self.stats.last_success_ns = now_ns()
        if self._proving and usable:  # it works
            self._proving = False
            self.delivering = True
            self._reconnect.reset()
            self._losses.recovery(f"device {self.name}: connected and reading values again")
        self._sink(batch)

    async def _poll_group(self, driver: Driver, group: PollGroup) -> None:
        """Poll at a fixed rate; a poll longer than the interval skips the missed ticks."""
        loop = asyncio.get_running_loop()
        interval = group.interval
        took = self.stats.poll_seconds.setdefault(group.name, Histogram(POLL_BUCKETS))
        next_tick = loop.time()
        while True:
            started = loop.time()
            batch = await driver.read(group)
            _honour_cancel()
            took.observe(loop.time() - started)
            self.stats.polls += 1
            self._emit(batch)
            next_tick += interval
            now = loop.time()
            if next_tick < now:
                missed = int((now - next_tick) // interval) + 1
                self.stats.overruns += missed
                next_tick += missed * interval
            await asyncio.sleep(next_tick - now)


def _honour_cancel() -> None:
    """Raise the cancellation a driver's library swallowed: on Python 3.11
    ``asyncio.wait_for`` returns its awaitable's result when it finishes at the moment the
    task is cancelled (pymodbus connects through it), and a task whose cancel was swallowed
    is not cancelled again: it would poll on for ever after its device was stopped or
    changed (a live config change, shutdown)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
