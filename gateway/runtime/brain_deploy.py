"""The brain's ``config/apply`` and ``model/deploy``: a signed bundle in, a version or a reason out.

Both contracts deliver them (a JSON ``cmd``, a Sparkplug NCMD metric:
:mod:`gateway.commands.deploy`); this module does the same for both, in the background
(a config change is watched for seconds) and one at a time, in arrival order (a
redelivered command waits for its first delivery and gets its answer again):

1. **allowed?** ``commands.config_apply`` / ``commands.model_deploy`` (default off: an
   engineer opts in); a retained or already answered command is not run again.
2. **verified** by the signed-bundle checks of the current config
   (:meth:`Gateway.bundle_verifier`): trusted key allowed to sign the kind, files,
   the kind's payload check, newer than the version applied last. A refusal is
   answered with its reason (``bad_signature: …``) and audited.
3. **applied**: a config through the one entry point of every config change
   (:meth:`ConfigApplier.apply`, author ``brain``, source ``brain``: validation with
   file/line/key, connect test, only changed devices restart, watch, automatic
   rollback); a model written into the models folder beside the others and taken in by
   the models' hot reload (a shadow candidate when its manifest says ``shadow: true``),
   and put back as it was when it does not go into service.
4. **recorded**: once in service the bundle's version is recorded (a second copy is a
   replay) and a ``deploy`` line is audited (:func:`gateway.audit.record_deployment`);
   the answer carries the resulting version. A model swapped in sends the births again,
   so the brain's inventory follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.audit import record_deployment
from gateway.bundles import VerifiedBundle, read_bundle
from gateway.commands.deploy import (
    CONFIG_APPLY,
    MODEL_DEPLOY,
    DeployRequest,
    looks_like_json_deploy,
    parse_json_deploy,
    peek_id,
)
from gateway.commands.result import CommandResult, CommandStatus
from gateway.config.yaml_model import parse_yaml
from gateway.durable import replace_durably
from gateway.errors import BundleRefused, ConfigError, DeployRefused, MalformedCommand

if TYPE_CHECKING:
    from edge_models.package import ModelPackage
    from gateway.northbound.contract import Contract
    from gateway.runtime.gateway import Gateway

log = logging.getLogger(__name__)

#: finished command ids remembered to answer duplicate deliveries without running again
RECENT_RESULTS = 256
#: commands waiting or running at once (each holds its bundle in memory); more are "busy"
MAX_PENDING = 4
#: the config flag that allows each operation
FLAGS = {CONFIG_APPLY: "config_apply", MODEL_DEPLOY: "model_deploy"}
SHADOW_SCOPE = "shadow"

Finish = Callable[[CommandResult], None]


@dataclass(frozen=True, slots=True)
class _Placed:
    """Where a model package goes in the models folder, and what was there before."""

    manifest: Path
    model: Path
    old_manifest: bytes | None
    old_model: bytes | None


class BrainDeployments:
    """Runs the brain's ``config/apply`` and ``model/deploy`` for one gateway."""

    def __init__(self, gateway: Gateway, recognise: Callable[[str, bytes], bool],
                 parse: Callable[[str, bytes, int], DeployRequest],
                 peek_id: Callable[[str, bytes], str | None]) -> None:
        """``recognise(topic, payload)``: is it one (the contract's cheap look);
        ``parse(topic, payload, max_bundle_bytes)``: the request, or
        :class:`MalformedCommand` (called in a thread); ``peek_id``: its id, cheaply, for
        a "busy" answer."""
        self.gateway = gateway
        self._recognise = recognise
        self._parse = parse
        self._peek_id = peek_id
        self._one_at_a_time = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._results: OrderedDict[str, CommandResult] = OrderedDict()

    # --- the executor's hook (gateway.commands.deploy.DeployHandler) ------------------------
    def recognise(self, topic: str, payload: bytes) -> bool:
        return self._recognise(topic, payload)

    def submit(self, topic: str, payload: bytes, retained: bool, finish: Finish) -> None:
        if len(self._tasks) >= MAX_PENDING:
            finish(CommandResult(self._peek_id(topic, payload), "rejected",
                                 f"busy: {MAX_PENDING} config/apply or model/deploy commands "
                                 "are waiting; send it again later"))
            return
        task = asyncio.get_running_loop().create_task(
            self._run(topic, payload, retained, finish), name="brain-deploy")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Wait for a deployment in progress (a config change finishes its watch)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- running ------------------------------------------------------------------------
    async def _run(self, topic: str, payload: bytes, retained: bool, finish: Finish) -> None:
        async with self._one_at_a_time:  # in arrival order (asyncio.Lock is FIFO)
            await self._run_one(topic, payload, retained, finish)

    async def _run_one(self, topic: str, payload: bytes, retained: bool,
                       finish: Finish) -> None:
        audit = self.gateway.audit
        try:
            request = await asyncio.to_thread(self._parse, topic, payload,
                                              self.gateway.config.bundles.max_bytes)
        except MalformedCommand as exc:
            record_deployment(audit, author="brain", via="mqtt", kind="bundle", name="",
                              version=None, outcome="refused", reason=f"malformed: {exc.reason}",
                              id=exc.command_id, size=len(payload))
            finish(CommandResult(exc.command_id, "rejected", exc.reason))
            return
        except Exception as exc:  # a bug must not leave the command unanswered
            log.exception("reading a deploy command failed")
            finish(CommandResult(None, "failed", f"internal error: {exc!r}"))
            return
        op = {"op": request.op}
        if retained:
            finish(CommandResult(request.id, "rejected", "retained commands are never executed "
                                 "(publish with retain=false)", extra=op))
            return
        earlier = self._results.get(request.id)
        if earlier is not None:
            audit.record("deploy", id=request.id, op=request.op, outcome="duplicate",
                         reason="already executed; the earlier result is repeated")
            finish(CommandResult(earlier.id, earlier.status, earlier.reason, duplicate=True,
                                 extra=earlier.extra))
            return
        try:
            result = await self._execute(request)
        except Exception as exc:
            log.exception("%s %s crashed", request.op, request.id)
            result = CommandResult(request.id, "failed", f"internal error: {exc!r}", extra=op)
        self._results[request.id] = result
        while len(self._results) > RECENT_RESULTS:
            self._results.popitem(last=False)
        finish(result)

    async def _execute(self, request: DeployRequest) -> CommandResult:
        kind = "config" if request.op == CONFIG_APPLY else "model"
        op: dict[str, Any] = {"op": request.op}
        flag = FLAGS[request.op]
        try:
            if not getattr(self.gateway.config.commands, flag):
                raise DeployRefused(f"{request.op} from the brain is not enabled on this "
                                    f"gateway (commands.{flag}: true turns it on)")
            if request.op == MODEL_DEPLOY and self.gateway.models is None:
                raise DeployRefused("edge models are not enabled on this gateway "
                                    "(models.enabled)")
        except DeployRefused as exc:
            record_deployment(self.gateway.audit, author="brain", via="mqtt", kind=kind,
                              name="", version=None, outcome="refused", reason=exc.reason,
                              id=request.id)
            return CommandResult(request.id, "rejected", exc.reason, extra=op)
        if request.op == CONFIG_APPLY:
            return await self._apply_config(request)
        return await self._deploy_model(request)

    def _refused(self, request: DeployRequest, kind: str, exc: BundleRefused,
                 bundle: VerifiedBundle | None = None) -> CommandResult:
        reason = f"{exc.reason}: {exc.detail}"
        record_deployment(self.gateway.audit, author="brain", via="mqtt", kind=kind,
                          name=bundle.name if bundle else "",
                          version=bundle.version.text if bundle else None, outcome="refused",
                          reason=reason, sha256=bundle.sha256 if bundle else None, id=request.id)
        return CommandResult(request.id, "rejected", reason,
                             extra={"op": request.op, "refused": exc.reason})

    async def _applied(self, bundle: VerifiedBundle, source: str) -> None:
        """Record the version in service (fsync'd: off the event loop); a failure to
        record is logged, the deployment stands."""
        try:
            await asyncio.to_thread(self.gateway.bundle_verifier().applied, bundle, source)
        except (OSError, BundleRefused) as exc:
            log.error("%s in service, but its version was not recorded: %s",
                      bundle.describe(), exc)

    # --- config/apply ---------------------------------------------------------------------
    async def _apply_config(self, request: DeployRequest) -> CommandResult:
        gw = self.gateway
        source = f"cmd {request.id}"
        verifier = gw.bundle_verifier()
        try:
            bundle = await asyncio.to_thread(verifier.verify, request.bundle, kind="config",
                                             source=source, check=self._config_check)
        except BundleRefused as exc:
            return self._refused(request, "config", exc)
        text = config_text(bundle)
        result = await gw.live.apply(text, "brain", request.expected_version, "brain")
        if result.ok:
            await self._applied(bundle, source)
        status: CommandStatus = "accepted" if result.ok else \
            "failed" if result.outcome == "rolled_back" else "rejected"
        reason = None if result.ok else f"{result.outcome}: {result.reason or result.outcome}"
        record_deployment(gw.audit, author="brain", via="mqtt", kind="config", name=bundle.name,
                          version=bundle.version.text,
                          outcome="deployed" if result.ok else
                          "rolled_back" if result.outcome == "rolled_back" else "refused",
                          reason=reason, sha256=bundle.sha256, id=request.id,
                          config_version=result.version)
        return CommandResult(request.id, status, reason, extra={
            "op": CONFIG_APPLY, "version": result.version, "bundle_version": bundle.version.text,
            "apply": result.as_dict()})

    def _config_check(self, bundle: VerifiedBundle) -> None:
        """The payload check of a config bundle sent to this gateway: one ``.yaml`` file,
        for this gateway (its name and its ``gateway.id``). Validation is the config
        change's own (its problems come back with file, line and key)."""
        gateway_id = self.gateway.config.gateway.id
        if bundle.name != gateway_id:
            raise BundleRefused("payload_mismatch", f"a config for gateway {bundle.name!r}; "
                                f"this is {gateway_id!r}")
        text = config_text(bundle)
        parsed = parse_yaml(text, "bundle")
        data = parsed.data
        section = data.get("gateway") if isinstance(data, dict) else None
        said = section.get("id") if isinstance(section, dict) else None
        if not parsed.problems and said != gateway_id:
            raise BundleRefused("payload_mismatch", f"the bundle is named {bundle.name!r} but "
                                f"its config's gateway.id is {said!r}")

    # --- model/deploy ---------------------------------------------------------------------
    async def _deploy_model(self, request: DeployRequest) -> CommandResult:
        from edge_models.package import check_model_package, model_package

        gw = self.gateway
        source = f"cmd {request.id}"
        verifier = gw.bundle_verifier()

        def verify() -> tuple[VerifiedBundle, ModelPackage]:  # loads the model: in a thread
            scope = SHADOW_SCOPE if _says_shadow(request.bundle) else ""
            bundle = verifier.verify(request.bundle, kind="model", source=source, scope=scope,
                                     check=check_model_package)
            package = model_package(bundle)
            if package.manifest.shadow != bool(scope):  # the signed manifest decides
                raise BundleRefused("payload_mismatch", "the manifest's shadow flag could not "
                                    "be read before its signature was checked")
            return bundle, package

        try:
            bundle, package = await asyncio.to_thread(verify)
        except BundleRefused as exc:
            return self._refused(request, "model", exc)
        manifest = package.manifest
        role = "shadow" if manifest.shadow else "active"
        model_info = {"name": manifest.name, "version": manifest.version, "role": role,
                      "sha256": manifest.sha256}
        extra: dict[str, Any] = {"op": MODEL_DEPLOY, "version": manifest.version,
                                 "model": model_info}
        try:
            placed = await asyncio.to_thread(self._place, package, role)
        except DeployRefused as exc:
            record_deployment(gw.audit, author="brain", via="mqtt", kind="model",
                              name=manifest.name, version=manifest.version, outcome="refused",
                              reason=exc.reason, sha256=bundle.sha256, id=request.id)
            return CommandResult(request.id, "rejected", exc.reason, extra=extra)
        await gw.declare_model_tags(manifest)  # a new model's, a first candidate's outputs
        why = await self._swap_in(package, placed)
        if why is not None:
            record_deployment(gw.audit, author="brain", via="mqtt", kind="model",
                              name=manifest.name, version=manifest.version,
                              outcome="rolled_back", reason=why, sha256=bundle.sha256,
                              id=request.id, role=role)
            return CommandResult(request.id, "failed", why, extra=extra)
        await self._applied(bundle, source)
        if role == "active":
            await self._retire_candidate(manifest.name, manifest.version, placed)
        model_info["file"] = placed.manifest.name
        record_deployment(gw.audit, author="brain", via="mqtt", kind="model", name=manifest.name,
                          version=manifest.version,
                          outcome="shadow" if manifest.shadow else "deployed",
                          sha256=bundle.sha256, id=request.id, role=role,
                          file=placed.manifest.name)
        log.info("model %s %s deployed by the brain (%s, %s)", manifest.name, manifest.version,
                 role, placed.manifest.name)
        return CommandResult(request.id, "accepted", None, extra=extra)

    async def _retire_candidate(self, name: str, version: str, active: _Placed) -> None:
        """A promotion: the shadow candidate of the version now active leaves the folder."""
        models = self.gateway.models
        assert models is not None
        candidates = [p for p, st in models.status.items()
                      if (st.name, st.role, st.version) == (name, "shadow", version)]
        if not candidates:
            return

        def remove() -> None:
            for path in candidates:
                model = _model_of(path)
                path.unlink(missing_ok=True)
                if model is not None and model != active.model:
                    model.unlink(missing_ok=True)

        await asyncio.to_thread(remove)
        await models.reload()
        log.info("model %s %s promoted: its shadow candidate retired", name, version)

    def _place(self, package: ModelPackage, role: str) -> _Placed:
        """Where the package goes (runs in a thread): over the manifest of the same model
        and role when there is one, else under the bundle's file names (``{name}.shadow.yaml``
        when that name holds another model); never over another model's files."""
        from edge_models.manifest import model_file

        models = self.gateway.models
        assert models is not None
        folder = models.folder
        manifest = package.manifest
        ours = [p for p, st in models.status.items()
                if (st.name, st.role) == (manifest.name, role)]
        others = {p for p in models.status if p not in ours}
        target = ours[0] if ours else folder / package.manifest_file
        if not ours and (target in others or target.exists()):
            target = folder / f"{manifest.name}{'.shadow' if role == 'shadow' else ''}.yaml"
            if target in others or target.exists():
                raise DeployRefused(f"{target.name} in the models folder holds another model: "
                                    "the package would overwrite it")
        onnx = model_file(manifest, target)
        if onnx.parent.resolve() != folder.resolve():
            raise DeployRefused(f"the manifest names {manifest.file!r}, outside the models "
                                "folder")
        old_manifest = _read(target)
        old_model = _read(onnx)
        if old_model is not None and old_model != package.model and \
                onnx != _model_of(target if ours else None):
            raise DeployRefused(f"{onnx.name} in the models folder belongs to another model: "
                                "the package would overwrite it")
        folder.mkdir(parents=True, exist_ok=True)
        # the model first: a manifest never names a model that is not there yet
        replace_durably(onnx, package.model)
        replace_durably(target, package.manifest_text.encode("utf-8"))
        return _Placed(target, onnx, old_manifest, old_model)

    async def _swap_in(self, package: ModelPackage, placed: _Placed) -> str | None:
        """Hot-reload the folder; None when the package's model is in service, else why
        not (the folder is then put back as it was and reloaded: the old model runs on)."""
        models = self.gateway.models
        assert models is not None
        manifest = package.manifest
        await models.reload()
        status = models.status.get(placed.manifest)
        if status is not None and status.loaded and status.last_error is None and \
                status.version == manifest.version and status.sha256 == manifest.sha256:
            return None
        why = (status.last_error if status is not None and status.last_error else
               "the models folder did not take it in")
        await asyncio.to_thread(_restore, placed)
        await models.reload()
        before = models.status.get(placed.manifest)
        keeps = (f"model {manifest.name} {before.version} keeps running"
                 if before is not None and before.loaded else "nothing was in service")
        return f"model {manifest.name} {manifest.version} did not go into service: {why}; " \
               f"the models folder is as it was ({keeps})"


def config_text(bundle: VerifiedBundle) -> str:
    """The one config file a config bundle holds, as text."""
    yaml_files = [n for n in bundle.files if n.endswith((".yaml", ".yml"))]
    if len(yaml_files) != 1 or len(bundle.files) != 1:
        raise BundleRefused("payload_mismatch", "a config bundle holds exactly one .yaml "
                            f"file; this one has {', '.join(sorted(bundle.files))}")
    try:
        return bundle.files[yaml_files[0]].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleRefused("payload_mismatch", f"{yaml_files[0]}: not UTF-8 text: "
                            f"{exc}") from None


def _says_shadow(data: bytes) -> bool:
    """Does the (not yet verified) package's manifest say ``shadow: true``? Only chooses
    whose version history the replay check uses; the verified manifest is checked after."""
    try:
        files = read_bundle(data).files
        manifests = [body for name, body in files.items() if name.endswith((".yaml", ".yml"))]
        if len(manifests) != 1:
            return False
        parsed = parse_yaml(manifests[0].decode("utf-8"), "manifest")
    except (BundleRefused, UnicodeDecodeError, ValueError):
        return False
    return isinstance(parsed.data, dict) and parsed.data.get("shadow") is True


def _model_of(manifest_path: Path | None) -> Path | None:
    """The ``.onnx`` file the manifest in the models folder names (None: none, unreadable)."""
    from edge_models.manifest import load_manifest, model_file

    if manifest_path is None:
        return None
    try:
        return model_file(load_manifest(manifest_path), manifest_path)
    except (ConfigError, OSError):
        return None


def deployments_for(gateway: Gateway, contract: Contract) -> BrainDeployments:
    """The handler for the gateway's contract: a JSON ``cmd`` of type ``config/apply`` or
    ``model/deploy``, or a Sparkplug NCMD with a bundle metric."""
    gateway_id = gateway.config.gateway.id
    if contract.format == "sparkplug":
        from gateway.northbound.sparkplug.commands import (
            command_id,
            is_deploy_command,
            parse_deploy_command,
        )

        payloads = contract.payloads  # type: ignore[attr-defined]  # the edge node's encoder
        return BrainDeployments(
            gateway, lambda topic, payload: is_deploy_command(topic, payload, payloads),
            lambda topic, payload, limit: parse_deploy_command(topic, payload, payloads, limit),
            lambda topic, payload: command_id(topic, payload, None))
    return BrainDeployments(
        gateway, lambda topic, payload: looks_like_json_deploy(payload),
        lambda topic, payload, limit: parse_json_deploy(payload, gateway_id, limit),
        lambda topic, payload: peek_id(payload))


def firmware_inventory(gateway: Gateway) -> list[dict[str, object]]:
    """Per device whose driver takes firmware updates: ``device``, ``name`` and ``applied``
    (the image and version applied last from a signed bundle, None when none was) and
    ``reported`` (the version the device says it runs, None until it said)."""
    try:
        entries = gateway.applied_versions.entries()
    except BundleRefused:  # unreadable: the births go on without the applied versions
        entries = {}
    applied: dict[str, tuple[str, str]] = {}
    for key, entry in entries.items():
        kind, _, rest = key.partition("/")
        image, _, node = rest.partition("@")
        if kind == "firmware" and node:
            applied[node] = (image, str(entry.get("version")))
    out: list[dict[str, object]] = []
    for device in gateway.config.devices:
        updates = gateway.drivers.firmware_of(device)
        if updates is None:
            continue
        runner = gateway.runners.get(device.name)
        driver = runner.driver if runner is not None else None
        reported = updates.reported_version(driver) if driver is not None else None
        bundle = applied.get(device.name)
        out.append({"device": device.name, "name": bundle[0] if bundle else None,
                    "applied": bundle[1] if bundle else None, "reported": reported})
    return out


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _restore(placed: _Placed) -> None:
    """Put the models folder back as it was before a package that did not go into service."""
    for path, old in ((placed.manifest, placed.old_manifest), (placed.model, placed.old_model)):
        if old is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        else:
            replace_durably(path, old)
