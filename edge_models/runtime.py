"""ONNX Runtime sessions for tiny models on small CPUs: load, validate, warm up, run.

A model is accepted only when its file's SHA-256 matches the manifest, its input and
output names, shapes and dtypes match the manifest, and a smoke inference returns
finite values of the expected shape. Anything else raises :class:`ModelLoadError`
with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from edge_models.manifest import Manifest, model_file
from gateway.errors import GatewayError

log = logging.getLogger(__name__)

_FLOAT_TYPES = ("tensor(float)", "tensor(double)")


class ModelLoadError(GatewayError):
    """A model (or its manifest) was refused; the message says why."""


class ModelRunError(GatewayError):
    """An inference failed."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def session_options() -> ort.SessionOptions:
    """One thread, no spinning: tiny models on 2-4 shared cores."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


@dataclass(slots=True)
class LoadedModel:
    """A validated, warmed-up session and what its manifest says about it."""

    manifest: Manifest
    manifest_path: Path
    sha256: str
    session: ort.InferenceSession
    batch_axis: bool
    input_dtype: np.dtype
    output_names: list[str] = field(default_factory=list)
    load_ns: int = 0

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def role(self) -> str:
        return "shadow" if self.manifest.shadow else "active"

    def describe(self) -> dict[str, object]:
        """For the birth: name, version, hash, role."""
        return {
            "name": self.manifest.name,
            "version": self.manifest.version,
            "sha256": self.sha256,
            "role": self.role,
        }

    def run(self, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``[n, inputs]`` features -> ``[n, outputs]`` (one run when the model has a batch
        axis, else one per row). Raises :class:`ModelRunError`."""
        x = np.ascontiguousarray(features, dtype=self.input_dtype)
        try:
            if self.batch_axis or len(x) == 1:
                results = [self._run(x)]
            else:
                results = [self._run(x[i : i + 1]) for i in range(len(x))]
        except ModelRunError:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelRunError(f"model {self.name}: inference failed: {exc}") from exc
        return np.concatenate(results) if len(results) > 1 else results[0]

    def _run(self, x: np.ndarray) -> npt.NDArray[np.float64]:
        raw = self.session.run(self.output_names, {self.manifest.input: x})
        by_name = dict(zip(self.output_names, raw, strict=True))
        n = len(x)
        cols = []
        for out in self.manifest.outputs:
            arr = np.asarray(by_name[out.onnx])
            if arr.shape[:1] != (n,) or arr.size % n:
                raise ModelRunError(
                    f"model {self.name}: output {out.onnx!r} has shape {arr.shape}, "
                    f"expected [{n}, ...]"
                )
            flat = arr.reshape(n, -1)
            if out.index >= flat.shape[1]:
                raise ModelRunError(
                    f"model {self.name}: output {out.onnx!r} has {flat.shape[1]} columns, "
                    f"the manifest reads column {out.index}"
                )
            cols.append(flat[:, out.index].astype(np.float64))
        return np.stack(cols, axis=1)


def load_model(manifest: Manifest, manifest_path: Path) -> LoadedModel:
    """Read, check and warm up the model a manifest describes."""
    path = model_file(manifest, manifest_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read the model: {exc.strerror or exc}") from exc
    digest = sha256_of(data)
    if digest != manifest.sha256:
        raise ModelLoadError(
            f"{path}: sha256 is {digest}, the manifest {manifest_path.name} says "
            f"{manifest.sha256}"
        )
    try:
        session = ort.InferenceSession(
            data, sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a loadable ONNX model: {exc}") from exc
    batch_axis, dtype = _check_input(session, manifest, path)
    names = _check_outputs(session, manifest, path)
    model = LoadedModel(manifest, manifest_path, digest, session, batch_axis, dtype, names,
                        time.time_ns())
    _smoke(model, path)
    return model


def _check_input(
    session: ort.InferenceSession, manifest: Manifest, path: Path
) -> tuple[bool, np.dtype]:
    inputs = session.get_inputs()
    if [i.name for i in inputs] != [manifest.input]:
        raise ModelLoadError(
            f"{path}: the model's inputs are {[i.name for i in inputs]}, the manifest names "
            f"one input {manifest.input!r}"
        )
    spec = inputs[0]
    if spec.type not in _FLOAT_TYPES:
        raise ModelLoadError(f"{path}: input {spec.name!r} is {spec.type}, expected float")
    shape = spec.shape
    n = len(manifest.inputs)
    if len(shape) != 2 or shape[1] != n:
        raise ModelLoadError(
            f"{path}: input {spec.name!r} has shape {shape}, the manifest lists {n} inputs: "
            f"expected [batch, {n}]"
        )
    batch_axis = not isinstance(shape[0], int)
    if isinstance(shape[0], int) and shape[0] != 1:
        raise ModelLoadError(f"{path}: input {spec.name!r} has a fixed batch of {shape[0]}")
    dtype = np.dtype(np.float32 if spec.type == "tensor(float)" else np.float64)
    return batch_axis, dtype


def _check_outputs(session: ort.InferenceSession, manifest: Manifest, path: Path) -> list[str]:
    outputs = {o.name: o for o in session.get_outputs()}
    for out in manifest.outputs:
        spec = outputs.get(out.onnx)
        if spec is None:
            raise ModelLoadError(
                f"{path}: no output {out.onnx!r} (manifest output {out.name!r}); the model "
                f"has {sorted(outputs)}"
            )
        if spec.type not in _FLOAT_TYPES:
            raise ModelLoadError(f"{path}: output {out.onnx!r} is {spec.type}, expected float")
        shape = spec.shape
        cols = shape[1] if len(shape) == 2 else 1 if len(shape) == 1 else None
        if cols is None:
            raise ModelLoadError(f"{path}: output {out.onnx!r} has shape {shape}, expected "
                                 "[batch] or [batch, k]")
        if isinstance(cols, int) and out.index >= cols:
            raise ModelLoadError(f"{path}: output {out.onnx!r} has {cols} columns, manifest "
                                 f"output {out.name!r} reads column {out.index}")
    return sorted({o.onnx for o in manifest.outputs})


def _smoke(model: LoadedModel, path: Path) -> None:
    """Smoke inference (and warm-up): a batch of the inputs' fill values."""
    fill = np.array([[i.fill for i in model.manifest.inputs]], np.float64)
    rows = 2 if model.batch_axis else 1
    x = np.repeat(fill, rows, axis=0)
    try:
        for _ in range(3):
            y = model.run(x)
    except ModelRunError as exc:
        raise ModelLoadError(f"{path}: smoke inference failed: {exc}") from exc
    if y.shape != (rows, len(model.manifest.outputs)):
        raise ModelLoadError(f"{path}: smoke inference gave shape {y.shape}")
    if not np.isfinite(y).all():
        raise ModelLoadError(f"{path}: smoke inference gave non-finite outputs {y.tolist()}")
