"""Staged apply of a new config to the running gateway, with automatic rollback.

One entry point for every way a config changes: :meth:`ConfigApplier.apply` (the local
config API and the brain's ``config/apply`` call it with the new text, who asks, and the
version the edit was based on), :meth:`ConfigApplier.apply_file` (SIGHUP: the config file
as a person left it) and :meth:`ConfigApplier.rollback` (back to a kept version). One
change at a time, in stages:

1. **check**: the version the edit was based on must be the one running (optimistic
   locking: of two edits based on the same version, the second is refused with the
   version it now has to build on); the config file must hold no edit that was not
   applied yet (an API edit would overwrite it).
2. **validate**: the same checks as ``chenxing-gateway validate`` (every problem with
   file, line and key), secrets included; then what the change does
   (:func:`~gateway.runtime.reload.plan_reload`): only ``devices`` and ``management``
   change live, and no edge model in service may lose a tag it reads.
3. **connect test**: each device added, or whose connection settings changed, is
   connected to once (``management.connect_test``); one that cannot connect refuses the
   change.
4. **apply**: the new text becomes the next version in the store
   (:mod:`gateway.config.store`) and the config file; only the devices that changed
   stop and start again (:meth:`Gateway.switch_config`), the others keep polling and
   publishing.
5. **watch**: every device added or changed (that was up before) must come up, i.e.
   connect and deliver a good or uncertain value, and the births after the change must
   be confirmed by the broker, within ``management.watch``. A device that does not, or
   the broker session lost during the watch, brings the previous version back by
   itself: a new version restoring the old text, the failed one marked ``rolled_back``
   with the reason, which the result, the log and the audit log report.

Nothing changes before stage 4: a refused change leaves the gateway, the store and the
config file as they were (a refused file edit stays in the file for the person to fix).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gateway.config.edit import read_edit
from gateway.config.loader import ConfigDocument, check_secrets, load_config_document
from gateway.config.models import GatewayConfig
from gateway.config.store import ConfigStore, ConfigVersion, text_sha256, write_config_file
from gateway.errors import (
    ConfigError,
    ConfigProblem,
    ConfigStoreError,
    ConfigStoreLocked,
    ReloadRefused,
)
from gateway.runtime.memory import SharedKeys, give_back_freed_memory
from gateway.runtime.reload import ReloadPlan, plan_reload
from gateway.tags import TagCatalog

if TYPE_CHECKING:
    from gateway.runtime.gateway import Gateway

log = logging.getLogger(__name__)
#: characters of a change's diff kept in its audit line
MAX_AUDIT_DIFF = 20_000

Outcome = Literal[
    "applied",  # in service; its devices came up (or it changed none)
    "unchanged",  # the same text as the version running
    "invalid",  # refused: validation problems (``problems``)
    "conflict",  # refused: based on another version than the one running
    "refused",  # refused: needs a restart, a model would lose its input, a pending file edit
    "connect_failed",  # refused: a device added or reconnected could not connect
    "rolled_back",  # applied, then rolled back by itself (``reason``)
    "valid",  # a dry run (:meth:`ConfigApplier.preview`): it passed validation, nothing changed
]
#: seconds between two looks at the devices and the broker while watching
WATCH_STEP = 0.02


@dataclasses.dataclass(frozen=True, slots=True)
class ApplyResult:
    """What became of one change (also the answer of the config API and the brain's
    ``config/apply``: :meth:`as_dict`)."""

    outcome: Outcome
    #: the version running after the call
    version: int | None
    #: the version running before the call
    previous: int | None
    #: what the change does, in words (``devices added: c; changed: a``)
    summary: str = ""
    #: why it was refused or rolled back
    reason: str | None = None
    #: ``invalid``: every problem, with file, line and key
    problems: tuple[ConfigProblem, ...] = ()
    #: per device tested or watched: ``up``, or what went wrong
    devices: dict[str, str] = dataclasses.field(default_factory=dict)
    #: ``rolled_back``: the version that was applied, then rolled back
    rolled_back: int | None = None
    #: from the call to the result
    seconds: float = 0.0
    #: seconds per stage reached: ``wait`` (for a change in progress), ``validate``,
    #: ``connect_test``, ``commit``, ``switch``, ``watch``, ``rollback``
    stages: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome in ("applied", "unchanged")

    def as_dict(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        body["problems"] = [
            {"file": p.file, "line": p.line, "key": p.path_text, "message": p.message}
            for p in self.problems
        ]
        body["seconds"] = round(self.seconds, 3)
        body["stages"] = {k: round(v, 3) for k, v in self.stages.items()}
        return body

    def describe(self) -> str:
        """One line for the log and the command line."""
        words = {"applied": f"applied as version {self.version}",
                 "unchanged": f"unchanged (version {self.version})",
                 "rolled_back": f"version {self.rolled_back} rolled back: version "
                                f"{self.version} restores version {self.previous}"}
        text = words.get(self.outcome, f"refused ({self.outcome}), version {self.version} "
                                       "keeps running")
        if self.summary and self.outcome != "unchanged":
            text += f" [{self.summary}]"
        if self.reason:
            text += f": {self.reason}"
        if self.problems:
            text += "".join(f"\n  {p}" for p in self.problems)
        return text


class _Stages:
    """Seconds from the call, and per stage."""

    def __init__(self) -> None:
        self.started = self._last = time.monotonic()
        self.seconds: dict[str, float] = {}

    def done(self, stage: str) -> None:
        now = time.monotonic()
        self.seconds[stage] = now - self._last
        self._last = now

    def result(self, outcome: Outcome, version: int | None, previous: int | None,
               summary: str = "", reason: str | None = None, **kw: Any) -> ApplyResult:
        return ApplyResult(outcome, version, previous, summary, reason,
                           seconds=time.monotonic() - self.started,
                           stages=dict(self.seconds), **kw)


@dataclasses.dataclass(slots=True)
class ApplyCounters:
    """Changes by source and outcome, for /metrics."""

    outcomes: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    last: ApplyResult | None = None


class ConfigApplier:
    """The staged apply of one running gateway (see the module docstring)."""

    def __init__(self, gateway: Gateway, store: ConfigStore, config_path: Path | None,
                 base_dir: Path) -> None:
        """``config_path``: the YAML file a person edits (written after each change made
        another way; None: only the store keeps versions). ``base_dir``: what relative
        paths in a config are relative to (the config file's folder)."""
        self.gateway = gateway
        self.store = store
        self.config_path = config_path
        self.base_dir = base_dir
        self.counters = ApplyCounters()
        #: the version running and its text
        self.version: int | None = None
        self._text = ""
        #: the running version read (data, lines, config): an edit of one device is then
        #: read again in part (gateway/config/edit.py)
        self._document: ConfigDocument | None = None
        #: one string per key of the documents' data (kept while running: issue 21)
        self._keys = SharedKeys()
        self._lock = asyncio.Lock()

    @property
    def lock(self) -> asyncio.Lock:
        """Held while a change is in progress (shutdown waits for it)."""
        return self._lock

    @property
    def text(self) -> str:
        """The text of the version running."""
        return self._text

    def read_data(self, document: ConfigDocument) -> dict[str, Any]:
        """The data of ``document``, read again from its text if it was not kept (the
        gateway starts without it), its keys shared: under :attr:`lock`, off the loop
        (~0.5 s at 100,000 tags)."""
        return document.read_data(self._keys.share)

    @property
    def document(self) -> ConfigDocument | None:
        """The version running as read (text, data, line map), when the applier has it."""
        document = self._document
        return document if document is not None and document.text == self._text else None

    @property
    def file_name(self) -> str:
        """The name problems are reported under: the config file's."""
        return str(self.config_path) if self.config_path is not None else "gateway.yaml"

    # --- start-up -------------------------------------------------------------------------------
    def start(self, text: str, document: ConfigDocument | None = None) -> ConfigVersion:
        """The gateway starts with ``text`` (``document``: as read, when the caller has it):
        the newest version when it is the same text, else a new version (the file was
        edited while the gateway was stopped, or this is the first start). Raises
        :class:`OSError` with the reason when the store cannot be used (another gateway holds
        it, the state folder cannot be written)."""
        try:
            self.store.hold()
            current = self.store.current()
            if current is not None and current.sha256 == text_sha256(text):
                record = current
            else:
                author, source = self.store.take_author(text) or ("file", "file")
                summary = "first start" if current is None else \
                    "config file changed while stopped"
                record = self.store.commit(text, author, source, summary, status="recorded")
                log.info("config version %d recorded (%s)", record.version, summary)
        except ConfigStoreLocked as exc:
            raise OSError(f"{exc}: is another gateway running with this state?") from None
        except ConfigStoreError as exc:
            raise OSError(str(exc)) from None
        self.version, self._text = record.version, text
        self._document = document if document is not None and document.text == text else None
        if self._document is not None and self._document.data is not None:
            self._keys.share(self._document.data)
        return record

    def stop(self) -> None:
        self.store.release()

    # --- the entry points -----------------------------------------------------------------------
    async def apply(self, text: str, author: str, expected_version: int | None,
                    source: str = "api") -> ApplyResult:
        """Validate, connect-test, apply and watch ``text`` as the next version.

        ``author``: who asks (a user name, ``brain``); ``expected_version``: the version the
        edit was based on (None: whatever runs, as for a file edit); ``source``: ``api``,
        ``brain``, ``file``, ``cli``, ``rollback``. Never raises for a bad config or a
        failed change: the result says what happened.
        """
        return await self._apply_locked(text, author, expected_version, source, False)

    async def _apply_locked(self, text: str, author: str, expected_version: int | None,
                            source: str, from_file: bool) -> ApplyResult:
        clock = _Stages()
        async with self._lock:
            clock.done("wait")
            result = await self._apply(text, author, expected_version, source, from_file,
                                       clock)
        self._report(result, source, author)
        # reading the new text freed what its parse and validation allocated (the whole
        # file's worth when it was read whole): back to the system, so that RSS does not
        # climb with each change (issue 21)
        await asyncio.to_thread(give_back_freed_memory)
        return result

    async def preview(self, text: str, expected_version: int | None) -> ApplyResult:
        """A dry run of :meth:`apply`: the check and the validation only (outcome ``valid``
        with what the change would do, or why it would be refused); nothing changes, nothing
        is recorded."""
        clock = _Stages()
        running = self.version
        if expected_version is not None and expected_version != running:
            return clock.result("conflict", running, running,
                                reason=_conflict(expected_version, running))
        if text == self._text:
            return clock.result("unchanged", running, running)
        try:
            document = await asyncio.to_thread(self._validate, text)
        except ConfigError as exc:
            return clock.result("invalid", running, running, reason=_errors(exc),
                                problems=tuple(exc.problems))
        try:
            plan = plan_reload(self.gateway.config, document.config)
            self._check_models(self.gateway.config, document.config)
        except ReloadRefused as exc:
            return clock.result("refused", running, running, reason=str(exc))
        clock.done("validate")
        summary = plan.summary() if plan else "no device changed (text only)"
        return clock.result("valid", running, running, summary)

    async def apply_file(self) -> ApplyResult:
        """SIGHUP: apply the config file as it is now (author: the one the command line
        left for this text, else ``file``)."""
        if self.config_path is None:
            raise ReloadRefused("the gateway runs without a config file")
        try:
            text = self.config_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problem = ConfigProblem(str(self.config_path), 0, (), f"cannot read: {exc}")
            result = ApplyResult("invalid", self.version, self.version, problems=(problem,))
            self._report(result, "file", "file")
            return result
        author, source = self.store.take_author(text) or ("file", "file")
        return await self._apply_locked(text, author, None, source, True)

    async def rollback(self, to_version: int | None, author: str,
                       expected_version: int | None, source: str = "api") -> ApplyResult:
        """Bring back the text of ``to_version`` (None: the parent of the version running)
        as a new version, through the same stages as any change."""
        try:
            if to_version is None:
                current = self.store.current()
                if current is None or current.parent is None:
                    raise ConfigStoreError("the version running has no parent to go back to")
                to_version = current.parent
            text = self.store.text(to_version)
        except ConfigStoreError as exc:
            result = ApplyResult("refused", self.version, self.version, reason=str(exc))
            self._report(result, source, author)
            return result
        return await self.apply(text, author, expected_version, source)

    # --- the stages -----------------------------------------------------------------------------
    async def _apply(self, text: str, author: str, expected: int | None, source: str,
                     from_file: bool, clock: _Stages) -> ApplyResult:
        running = self.version

        def refuse(outcome: Outcome, reason: str | None = None, summary: str = "",
                   **kw: Any) -> ApplyResult:
            return clock.result(outcome, running, running, summary, reason, **kw)

        if not self.gateway.started.is_set() or self.gateway.northbound is None:
            return refuse("refused", "the gateway is not running yet")
        # 1. check
        if expected is not None and expected != running:
            return refuse("conflict", _conflict(expected, running))
        if text == self._text:
            return refuse("unchanged")
        if not from_file and self._file_has_pending_edit():
            return refuse("refused", f"{self.config_path} has edits that were not applied "
                                     "(SIGHUP applies them): apply or undo them first")
        # 2. validate
        old, old_document = self.gateway.config, self._document
        try:
            document = await asyncio.to_thread(self._validate, text)
        except ConfigError as exc:
            return refuse("invalid", _errors(exc), problems=tuple(exc.problems))
        # the running config's objects wherever equal: a change (or a reload of the same
        # file) would otherwise keep two copies of every tag
        new = keep_running_devices(old, document.config)
        document = dataclasses.replace(document, config=new)
        try:
            plan = plan_reload(old, new)
            self._check_models(old, new)
        except ReloadRefused as exc:
            return refuse("refused", str(exc))
        summary = plan.summary() if plan else "no device changed (text only)"
        catalog = await asyncio.to_thread(self.gateway.next_catalog, new) if plan else None
        clock.done("validate")
        # 3. connect test
        if plan and catalog is not None and new.management.connect_test:
            failed = await self._connect_test(new, plan, catalog)
            if failed:
                reasons = "; ".join(f"{n}: {why}" for n, why in failed.items())
                return refuse("connect_failed", f"cannot connect: {reasons}", summary,
                              devices=failed)
            clock.done("connect_test")
        # 4. apply
        up_before = {n for n, r in self.gateway.runners.items() if r.delivering}
        try:
            record = await asyncio.to_thread(
                self.store.commit, text, author, source, summary,
                "applying" if plan else "applied", None, self._text)
        except ConfigStoreError as exc:
            return refuse("refused", str(exc), summary)
        old_text = self._text
        self.version, self._text, self._document = record.version, text, document
        if not from_file:
            self._write_file(text)
        clock.done("commit")
        log.info("config version %d from %s (%s): %s", record.version, author, source, summary)
        if not plan:
            return clock.result("applied", record.version, running, summary)
        watch = self._watch_for(plan, up_before)
        births = await self.gateway.switch_config(new, plan, catalog)
        clock.done("switch")
        # 5. watch
        devices, failure = await self._watch(watch, births, new.management.watch)
        clock.done("watch")
        if failure is None and self.gateway.stopping.is_set():
            return clock.result("applied", record.version, running, summary,
                                "the gateway stopped before the watch ended", devices=devices)
        if failure is None:
            await asyncio.to_thread(self.store.mark, record.version, "applied")
            return clock.result("applied", record.version, running, summary, devices=devices)
        self._document = old_document
        return await self._roll_back(record, old, old_text, new, failure, devices, clock)

    def _validate(self, text: str) -> ConfigDocument:
        """``chenxing-gateway validate --secrets`` on the text (runs in a thread); an edit of
        one device of the version running is read in part."""
        drivers = self.gateway.drivers
        previous = self._document
        document = None
        if previous is not None and previous.text == self._text:
            self.read_data(previous)
            document = read_edit(previous, text, drivers)
        if document is None:
            document = load_config_document(text, self.file_name, self.base_dir, drivers)
        check_secrets(document.config, base_dir=self.base_dir, text=text, file=self.file_name)
        self._keys.share(document.data)  # before anyone else sees it
        return document

    def _check_models(self, old: GatewayConfig, new: GatewayConfig) -> None:
        """No model in service may lose a tag it reads (its windows would starve)."""
        models = self.gateway.models
        if models is None:
            return
        remaining = {f"{d.name}.{t.name}" for d in new.devices if d.enabled for t in d.tags}
        remaining |= {t.path for t in self.gateway.catalog.tags
                      if t.device == old.models.device}
        lost = [f"model {name} reads {path}" for name, paths in models.engine.tags_read().items()
                for path in paths if path not in remaining]
        if lost:
            raise ReloadRefused(f"{'; '.join(lost)}, which the change removes: remove or "
                                "change the model first")

    def _file_has_pending_edit(self) -> bool:
        """The config file holds another text than the version running (edited, not yet
        applied: an edit made another way would overwrite it)."""
        if self.config_path is None:
            return False
        try:
            return self.config_path.read_text(encoding="utf-8") != self._text
        except (OSError, UnicodeDecodeError):
            return False  # gone or unreadable: writing it again loses nothing

    def _write_file(self, text: str) -> None:
        """The config file shows the version running."""
        if self.config_path is None:
            return
        try:
            write_config_file(self.config_path, text)
        except OSError as exc:
            log.error("config version %s runs, but %s could not be written: %s (the store "
                      "has it: chenxing-gateway config show)", self.version, self.config_path,
                      exc)

    async def _connect_test(self, new: GatewayConfig, plan: ReloadPlan,
                            catalog: TagCatalog) -> dict[str, str]:
        """Connect once to each device added or reconnected; device -> why it failed."""
        devices = {d.name: d for d in new.devices}
        names = [n for n in plan.added + plan.reconnected]
        results = await asyncio.gather(*(
            self.gateway.connect_test(devices[n], catalog, new.management.connect_timeout)
            for n in names))  # fmt: skip
        return {n: why for n, why in zip(names, results, strict=True) if why is not None}

    def _watch_for(self, plan: ReloadPlan, up_before: set[str]) -> list[str]:
        """Devices that must come up: those added, and those changed that were up."""
        return list(plan.added) + [n for n in plan.changed if n in up_before]

    async def _watch(self, names: Iterable[str], births: bool,
                     seconds: float) -> tuple[dict[str, str], str | None]:
        """Wait until every device of ``names`` delivers and the births after the change
        are confirmed; (per device state, None) or (…, why it failed)."""
        gw = self.gateway
        publisher = gw.northbound
        assert publisher is not None
        names = list(names)
        link = publisher.link
        in_session = publisher.in_session()
        disconnects = link.disconnects
        births_mark = publisher.counters.births
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds

        def delivering(name: str) -> bool:
            runner = gw.runners.get(name)
            return runner is not None and runner.delivering

        while True:
            if gw.stopping.is_set():  # shutting down: what runs now is what stops
                return self._states(names), None
            waiting = [n for n in names if not delivering(n)]
            if in_session and link.disconnects != disconnects:
                why = link.last_error or "disconnected"
                return self._states(names), f"the broker session was lost after the change " \
                                            f"({why})"
            births_done = not (births and in_session) or \
                publisher.counters.births_confirmed > births_mark
            if not waiting and births_done:
                return self._states(names), None
            if loop.time() >= deadline:
                if waiting:
                    states = self._states(names)
                    return states, f"not up within {seconds:g}s: " + "; ".join(
                        f"{n} ({states[n]})" for n in waiting)
                return self._states(names), f"the births after the change were not " \
                                            f"confirmed by the broker within {seconds:g}s"
            await asyncio.sleep(WATCH_STEP)

    def _states(self, names: Iterable[str]) -> dict[str, str]:
        """Per device: ``up`` (delivering), or its state and last error."""
        out = {}
        for name in names:
            runner = self.gateway.runners.get(name)
            if runner is None:
                out[name] = "not running"
                continue
            state, error = runner.stats.state.value, runner.stats.last_error
            if runner.delivering:
                out[name] = "up"
            elif state == "up":
                out[name] = "connected, no good value read" + (f" ({error})" if error else "")
            else:
                out[name] = f"{state}: {error}" if error else state
        return out

    async def _roll_back(self, failed: ConfigVersion, old: GatewayConfig, old_text: str,
                         new: GatewayConfig, reason: str, devices: dict[str, str],
                         clock: _Stages) -> ApplyResult:
        """Back to ``old`` by itself: devices first, then the store and the file."""
        log.error("config version %d: %s; rolling back to version %s", failed.version, reason,
                  failed.parent)
        northbound = self.gateway.northbound
        generation = northbound.link.generation if northbound is not None else 0
        await self.gateway.switch_config(old, plan_reload(new, old))
        restored = failed.parent
        record = await asyncio.to_thread(
            self.store.commit, old_text, "gateway", "rollback",
            f"automatic rollback of version {failed.version}", "applied", restored,
            self._text)
        await asyncio.to_thread(self.store.mark, failed.version, "rolled_back", reason)
        self.version, self._text = record.version, old_text
        if northbound is not None:
            if northbound.link.generation != generation:
                northbound.rebirth()  # a session came up meanwhile: its birth named `failed`
            northbound.link.retry_now()  # the session the change lost: back at once
        self._write_file(old_text)  # the failed text stays in the store
        clock.done("rollback")
        return clock.result("rolled_back", record.version, restored, failed.summary, reason,
                            devices=devices, rolled_back=failed.version)

    # --- reporting ------------------------------------------------------------------------------
    def _report(self, result: ApplyResult, source: str, author: str) -> None:
        self.counters.outcomes[(source, result.outcome)] += 1
        self.counters.last = result
        self.store.record_result({"author": author, "source": source, **result.as_dict()})
        level = logging.INFO if result.ok else (
            logging.ERROR if result.outcome == "rolled_back" else logging.WARNING)
        log.log(level, "config change from %s (%s): %s", author, source, result.describe())
        diff = None
        if result.version is not None and result.previous is not None \
                and result.version != result.previous:
            with contextlib.suppress(Exception):  # the audit line goes out without it
                diff = self.store.diff_between(result.previous, result.version)[:MAX_AUDIT_DIFF]
        self.gateway.audit.record("config", user=author, via=source, outcome=result.outcome,
                                  version=result.version, parent=result.previous,
                                  rolled_back=result.rolled_back, summary=result.summary,
                                  reason=result.reason, diff=diff)


def _conflict(expected: int, running: int | None) -> str:
    return (f"the edit is based on version {expected}, but version {running} runs now: "
            f"apply it again on version {running}")


def _errors(exc: ConfigError) -> str:
    return f"{len(exc.problems)} configuration error{'s' if len(exc.problems) != 1 else ''}"


def keep_running_devices(old: GatewayConfig, new: GatewayConfig) -> GatewayConfig:
    """``new`` holding the running config's objects wherever they are equal: a device that
    did not change, and the tags of one that did (the catalog holds them; a reload that
    left them equal would otherwise keep two copies of every tag, ~0.8 KB each)."""
    running = {d.name: d for d in old.devices}
    devices = []
    for device in new.devices:
        was = running.get(device.name)
        if was is not None and device == was:
            device = was
        elif was is not None and device.tags == was.tags:
            device = device.model_copy(update={"tags": was.tags})
        devices.append(device)
    return new.model_copy(update={"devices": devices})
