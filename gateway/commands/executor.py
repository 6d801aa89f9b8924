"""Runs commands from the brain, one at a time, in arrival order.

For each command: parse, refuse retained and duplicate deliveries, check every write
(writable, type, range, rate) and execute none unless all pass, write them in
order through the device's driver, optionally verify by read-back, audit every
command and write, answer with a :class:`CommandResult`. Nothing but configured
writable tags is ever written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from drivers.base import Driver
from gateway.commands.audit import AuditLog
from gateway.commands.deploy import DeployHandler
from gateway.commands.firmware import FirmwareCommands
from gateway.commands.parse import Command, parse_command
from gateway.commands.ratelimit import WriteRateLimiter
from gateway.commands.readback import ReadBackWatcher
from gateway.commands.result import CommandResult, WriteOutcome
from gateway.commands.validate import RawValue, matches, to_raw
from gateway.config.models import CommandsConfig
from gateway.errors import DeviceWriteRefused, DriverError, MalformedCommand, WriteRefused
from gateway.tags import TagCatalog, TagInfo
from gateway.types import SampleBatch, now_ns

log = logging.getLogger(__name__)

#: command ids remembered to answer duplicate deliveries without writing again
RECENT_IDS = 1024
#: commands waiting to run; past this they are answered "busy"
QUEUE_SIZE = 64


@dataclass(slots=True)
class CommandCounters:
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    duplicates: int = 0
    writes: int = 0
    #: empty payloads on the command topics (clearing a retained message), ignored
    empty_ignored: int = 0


@dataclass(frozen=True, slots=True)
class _Incoming:
    topic: str
    payload: bytes
    retained: bool


@dataclass(slots=True)
class _Planned:
    tag: TagInfo | None  # None: an unknown tag, whose write was refused
    raw: RawValue
    outcome: WriteOutcome


class CommandExecutor:
    def __init__(
        self,
        config: CommandsConfig,
        catalog: TagCatalog,
        gateway_id: str,
        driver_of: Callable[[str], Driver | None],
        audit: AuditLog,
        answer: Callable[[CommandResult], None],
        clock: Callable[[], float] = time.monotonic,
        parse: Callable[[str, bytes], Command] | None = None,
    ) -> None:
        """``driver_of(device)`` is the device's connected driver or None; ``answer``
        publishes a result; ``parse(topic, payload)`` reads a command (default: the JSON
        ``cmd``; Sparkplug NCMD/DCMD bring their own), raising :class:`MalformedCommand`."""
        self.config = config
        self.catalog = catalog
        self.counters = CommandCounters()
        self.readback = ReadBackWatcher()
        self._gateway_id = gateway_id
        self._driver_of = driver_of
        self._audit = audit
        self._answer = answer
        self._rates = WriteRateLimiter(clock)
        self._recent: OrderedDict[str, CommandResult] = OrderedDict()
        self._queue: asyncio.Queue[_Incoming] = asyncio.Queue(QUEUE_SIZE)
        #: the brain's commands and the local API's writes run one at a time
        self._one_at_a_time = asyncio.Lock()
        self._closing = False
        self._parse = parse or (
            lambda topic, payload: parse_command(payload, gateway_id, config.max_writes_per_command)
        )
        #: ``firmware_update`` commands (gateway/commands/firmware.py), when MCU nodes allow them
        self.firmware: FirmwareCommands | None = None
        #: ``config/apply`` and ``model/deploy`` (gateway/commands/deploy.py), set by the runtime
        self.deploy: DeployHandler | None = None

    # --- input (event loop, from the MQTT link) ----------------------------------------
    def submit(self, topic: str, payload: bytes, retained: bool) -> None:
        """Queue a received command; never raises. An empty payload is no command: it is
        how a retained message is cleared (and is forwarded as one), so it is ignored and
        counted, neither answered nor audited."""
        if not payload:
            self.counters.empty_ignored += 1
            log.debug("empty payload on %s ignored (a retained message cleared)", topic)
            return
        self.counters.received += 1
        incoming = _Incoming(topic, payload, retained)
        if self._closing:
            self._finish(incoming, None, CommandResult(
                self._peek_id(incoming), "rejected", "the gateway is shutting down"))
            return
        try:
            self._queue.put_nowait(incoming)
        except asyncio.QueueFull:
            self._finish(incoming, None, CommandResult(
                self._peek_id(incoming), "rejected", f"busy: {QUEUE_SIZE} commands are waiting"))

    async def shutdown(self, timeout: float) -> bool:
        """Refuse new commands and let the queued ones finish (up to ``timeout`` s)."""
        self._closing = True
        try:
            async with asyncio.timeout(timeout):
                await self.idle()
                if self.deploy is not None:  # a config change being watched, a model swap
                    await self.deploy.close()
        except TimeoutError:
            return False
        return True

    def audit(self, event: str, **fields: object) -> None:
        """Audit a command handled elsewhere (a Sparkplug rebirth request)."""
        self._audit.record(event, **fields)

    def revise(self, catalog: TagCatalog, firmware: FirmwareCommands | None) -> None:
        """A live config change: writes are checked against the new catalog (a tag keeps its
        id, so its write rate carries over); firmware targets follow the devices."""
        self.catalog = catalog
        if self.firmware is None:
            self.firmware = firmware
        else:  # the same handler: an update running now stays known to it
            self.firmware.retarget(firmware)

    def observe(self, batch: SampleBatch) -> None:
        """Every raw batch from the devices, for read-back verification."""
        self.readback.observe(batch)

    def close(self) -> None:
        self._audit.close()

    # --- worker ----------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            incoming = await self._queue.get()
            try:
                await self._handle(incoming)
            except Exception:  # a bug here must not stop the gateway or leave a silent command
                log.exception("command from %s crashed", incoming.topic)
                self._finish(incoming, None, CommandResult(
                    self._peek_id(incoming), "failed", "internal error in the gateway"))
            finally:
                self._queue.task_done()

    async def idle(self) -> None:
        """Return once every command submitted so far has been handled."""
        await self._queue.join()

    async def _handle(self, incoming: _Incoming) -> None:
        # config bundles and model packages: a JSON ``cmd`` or a Sparkplug NCMD metric
        if self.deploy is not None and self.deploy.recognise(incoming.topic, incoming.payload):
            self.deploy.submit(incoming.topic, incoming.payload, incoming.retained,
                               lambda result: self._finish(incoming, None, result, False))
            return
        # firmware updates: the JSON ``cmd`` topic, or a JSON payload on Sparkplug's NCMD (a
        # node-level action); never on DCMD, where only protobuf metric writes are accepted
        if (
            self.firmware is not None
            and "/DCMD/" not in incoming.topic
            and self.firmware.handles(incoming.payload)
        ):
            self.firmware.submit(incoming.topic, incoming.payload, incoming.retained,
                                 lambda result: self._finish(incoming, None, result))
            return
        try:
            command = self._parse(incoming.topic, incoming.payload)
        except MalformedCommand as exc:
            self._finish(incoming, None, CommandResult(exc.command_id, "rejected", exc.reason))
            return
        if incoming.retained:
            self._finish(incoming, command, CommandResult(
                command.id, "rejected",
                "retained commands are never executed (publish commands with retain=false)",
                [WriteOutcome(w.tag, w.value, "rejected", "not executed") for w in command.writes],
            ))
            return
        earlier = self._recent.get(command.id)
        if earlier is not None:
            self.counters.duplicates += 1
            self._audit.record("cmd", id=command.id, topic=incoming.topic, outcome="duplicate",
                               reason="already executed; the earlier result is repeated")
            log.info("command %r: duplicate delivery, not executed again", command.id)
            self._answer(CommandResult(earlier.id, earlier.status, earlier.reason,
                                       earlier.results, duplicate=True))
            return
        async with self._one_at_a_time:
            result = await self._execute(command, incoming.topic)
        self._finish(incoming, command, result)

    async def execute_local(self, payload: bytes, source: str, user: str | None
                            ) -> CommandResult:
        """Writes from the local API (``POST /api/writes``): the same checks, order and
        audit as the brain's commands, one at a time with them; answered to the caller,
        not on MQTT. ``source``: what the audit lines name as their topic (``http:session``,
        ``http:token``, ``http:loopback``); ``user``: who asked (None: the shared token or
        an anonymous caller on this machine)."""
        self.counters.received += 1
        try:
            command = parse_command(payload, self._gateway_id, self.config.max_writes_per_command)
        except MalformedCommand as exc:
            result = CommandResult(exc.command_id, "rejected", exc.reason)
            self._count(result)
            self._audit.record("cmd", id=result.id, topic=source, user=user, outcome="rejected",
                               reason=exc.reason)
            return result
        if self._closing:
            result = CommandResult(command.id, "rejected", "the gateway is shutting down")
        else:
            async with self._one_at_a_time:
                result = await self._execute(command, source, user)
        self._count(result)
        self._audit.record("cmd", id=result.id, topic=source, user=user, outcome=result.status,
                           reason=result.reason, writes=len(command.writes))
        log.log(logging.INFO if result.status == "accepted" else logging.WARNING,
                "writes %r from %s (%s): %s%s", result.id, source, user or "no user",
                result.status, f" ({result.reason})" if result.reason else "")
        return result

    async def _execute(self, command: Command, topic: str,
                       user: str | None = None) -> CommandResult:
        planned: list[_Planned] = []
        refused = False
        counts: dict[int, int] = {}
        for request in command.writes:
            outcome = WriteOutcome(request.tag, request.value)
            tag = self.catalog.get(request.tag)
            try:
                raw = to_raw(tag, request.tag, request.value)
                assert tag is not None
                wait = self._rates.wait_s(tag.id, tag.config.max_write_rate, counts.get(tag.id, 0))
                if wait:
                    raise WriteRefused(
                        f"{request.tag}: too fast: at most {tag.config.max_write_rate:g} "
                        f"writes/min; retry in {wait:.1f} s"
                    )
                counts[tag.id] = counts.get(tag.id, 0) + 1
            except WriteRefused as exc:
                outcome.reason = exc.reason
                refused = True
                planned.append(_Planned(tag, 0.0, outcome))
                continue
            planned.append(_Planned(tag, raw, outcome))
        if refused:
            for p in planned:
                if p.outcome.reason is None:
                    p.outcome.reason = "not executed: another write in this command was rejected"
                self._audit_write(command.id, topic, p, None, user)
            return CommandResult(command.id, "rejected", "a write was rejected; nothing written",
                                 [p.outcome for p in planned])
        failed = False
        for p in planned:
            if failed:
                p.outcome.reason = "not executed: an earlier write failed"
            else:
                await self._write(p)
                failed = p.outcome.status != "accepted"
            self._audit_write(command.id, topic, p, p.raw, user)
        return CommandResult(command.id, "failed" if failed else "accepted", None,
                             [p.outcome for p in planned])

    async def _write(self, p: _Planned) -> None:
        tag, outcome = p.tag, p.outcome
        assert tag is not None  # only a command with every write planned is executed
        driver = self._driver_of(tag.device)
        if driver is None:
            outcome.status, outcome.reason = "failed", f"device {tag.device} is not connected"
            return
        self._rates.record(tag.id, tag.config.max_write_rate)
        self.counters.writes += 1
        try:
            await driver.write(tag.id, p.raw)
        except DeviceWriteRefused as exc:
            outcome.status, outcome.reason = "failed", f"the device refused the write: {exc}"
            return
        except DriverError as exc:
            outcome.status, outcome.reason = "failed", f"write failed: {exc}"
            return
        except Exception as exc:
            log.exception("write of %r to %s crashed", p.raw, tag.path)
            outcome.status, outcome.reason = "failed", f"internal error: {exc!r}"
            return
        written_ns = now_ns()
        outcome.status = "accepted"
        if not tag.config.verify_write:
            return
        raw = p.raw
        seen = await self.readback.wait(
            tag.id, written_ns, lambda v: matches(tag, raw, v), self.config.verify_timeout
        )
        outcome.verified = seen.matched
        if not seen.matched:
            outcome.status = "failed"
            if seen.samples:
                outcome.reason = (
                    f"written, but read back raw {seen.last_value!r} instead of {raw!r}"
                )
            else:
                outcome.reason = (
                    f"written, but no read-back within {self.config.verify_timeout:g} s"
                )

    def _count(self, result: CommandResult) -> None:
        if result.status == "accepted":
            self.counters.accepted += 1
        elif result.status == "rejected":
            self.counters.rejected += 1
        else:
            self.counters.failed += 1

    def _peek_id(self, incoming: _Incoming) -> str | None:
        """The command id, if one can be read, for answers to commands never parsed."""
        try:
            return self._parse(incoming.topic, incoming.payload).id
        except MalformedCommand as exc:
            return exc.command_id
        except Exception:
            return None

    # --- audit and answer ----------------------------------------------------------------
    def _audit_write(
        self, command_id: str, topic: str, p: _Planned, raw: RawValue | None,
        user: str | None = None,
    ) -> None:
        o = p.outcome
        who = {} if user is None else {"user": user}
        self._audit.record("write", id=command_id, topic=topic, tag=o.tag, value=o.value,
                           raw=raw if o.status != "rejected" else None, outcome=o.status,
                           reason=o.reason, verified=o.verified, **who)

    def _finish(
        self, incoming: _Incoming, command: Command | None, result: CommandResult,
        with_payload: bool = True,
    ) -> None:
        """Count, audit, remember, log and answer a command's result (``with_payload``: the
        audit line quotes the start of a payload that was not read into a command; not for
        bundles, whose bytes say nothing)."""
        self._count(result)
        quote = command is None and with_payload
        op = {"op": result.extra["op"]} if "op" in result.extra else {}
        self._audit.record(
            "cmd", id=result.id, topic=incoming.topic, outcome=result.status,
            reason=result.reason, writes=len(command.writes) if command else None,
            retained=incoming.retained or None,
            payload=incoming.payload[:1024].decode("utf-8", "replace") if quote else None, **op,
        )
        level = logging.INFO if result.status == "accepted" else logging.WARNING
        log.log(level, "command %r from %s: %s%s", result.id, incoming.topic, result.status,
                f" ({result.reason})" if result.reason else "")
        if result.id is None:
            return  # nobody to answer: audited and logged only
        if command is not None and not incoming.retained:
            self._recent[result.id] = result
            while len(self._recent) > RECENT_IDS:
                self._recent.popitem(last=False)
        self._answer(result)
