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
from gateway.errors import ModelLoadError, ModelRunError

log = logging.getLogger(__name__)

_FLOAT_TYPES = ("tensor(float)", "tensor(double)")


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


#: batch sizes whose I/O bindings a model keeps (the oldest made goes first): rows due
#: per tick vary with the machines whose cycles ended; each binding is a few arrays
_MAX_BINDINGS = 128
_NP_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}


class _Binding:
    """Preallocated input and output arrays bound to a session for one batch size.

    ``session.run`` builds its feed and output lists and allocates outputs on every call,
    which costs about as much as running a tiny model; an ``IOBinding`` on arrays kept
    here makes a call write the features in place, run, and read the outputs back.
    """

    __slots__ = ("_io", "outputs", "session", "x")

    def __init__(self, session: ort.InferenceSession, input_name: str, dtype: np.dtype,
                 n: int, k: int, shapes: dict[str, tuple[int, ...]],
                 types: dict[str, type]) -> None:
        self.session = session
        self.x = np.zeros((n, k), dtype)
        self._io = session.io_binding()
        self._io.bind_cpu_input(input_name, self.x)
        self.outputs: list[np.ndarray] = []
        for name, shape in shapes.items():
            arr: np.ndarray = np.empty((n, *shape[1:]), types[name])
            self._io.bind_output(name, "cpu", 0, arr.dtype, list(arr.shape), arr.ctypes.data)
            self.outputs.append(arr)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        np.copyto(self.x, x, casting="same_kind")
        self.session.run_with_iobinding(self._io)
        return self.outputs


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
    #: (CPU seconds, rows) of the timed smoke runs at load
    smoke_runs: list[tuple[float, int]] = field(default_factory=list)
    #: per manifest output: (position in ``output_names``, column)
    _columns: list[tuple[int, int]] = field(default_factory=list, repr=False)
    #: batch size -> I/O binding; ``None`` when the model cannot be bound (run plainly)
    _bindings: dict[int, _Binding] | None = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        pos = {name: i for i, name in enumerate(self.output_names)}
        self._columns = [(pos[o.onnx], o.index) for o in self.manifest.outputs]

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
        n = len(features)
        try:
            if self.batch_axis or n == 1:
                return self._run(features)
            return np.concatenate([self._run(features[i : i + 1]) for i in range(n)])
        except ModelRunError:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelRunError(f"model {self.name}: inference failed: {exc}") from exc

    def _run(self, x: np.ndarray) -> npt.NDArray[np.float64]:
        n = len(x)
        binding = self._binding(n)
        raw = None
        if binding is not None:
            try:
                raw = binding.run(x)
            except Exception as exc:  # e.g. outputs not of their declared shape
                log.warning("model %s: bound run failed (%s); plain session runs from now",
                            self.name, exc)
                self._bindings = None
        if raw is None:
            feed = {self.manifest.input: np.ascontiguousarray(x, dtype=self.input_dtype)}
            raw = self.session.run(self.output_names, feed)
        out = np.empty((n, len(self._columns)))
        for j, (i, col) in enumerate(self._columns):
            arr = raw[i]
            if arr.shape[:1] != (n,) or arr.size % n:
                raise ModelRunError(
                    f"model {self.name}: output {self.output_names[i]!r} has shape "
                    f"{arr.shape}, expected [{n}, ...]"
                )
            flat = arr.reshape(n, -1)
            if col >= flat.shape[1]:
                raise ModelRunError(
                    f"model {self.name}: output {self.output_names[i]!r} has "
                    f"{flat.shape[1]} columns, the manifest reads column {col}"
                )
            out[:, j] = flat[:, col]
        return out

    def _binding(self, n: int) -> _Binding | None:
        """The I/O binding for batch size ``n``, made on first use; ``None`` when the
        session's outputs have no fixed shape apart from the batch (then run plainly)."""
        if self._bindings is None:
            return None
        binding = self._bindings.get(n)
        if binding is not None and binding.session is self.session:
            return binding
        shapes: dict[str, tuple[int, ...]] = {}
        types: dict[str, type] = {}
        try:
            for o in self.session.get_outputs():
                if o.name in self.output_names:
                    if not all(isinstance(d, int) for d in o.shape[1:]) or \
                            o.type not in _NP_TYPES:
                        raise ValueError(f"output {o.name} has shape {o.shape}")
                    shapes[o.name] = tuple(o.shape)
                    types[o.name] = _NP_TYPES[o.type]
            shapes = {name: shapes[name] for name in self.output_names}
            binding = _Binding(self.session, self.manifest.input, self.input_dtype, n,
                               len(self.manifest.inputs), shapes, types)
        except Exception as exc:  # not bindable: a symbolic output shape, a test double
            log.debug("model %s: no I/O binding (%s), plain session runs", self.name, exc)
            self._bindings = None
            return None
        if len(self._bindings) >= _MAX_BINDINGS:
            del self._bindings[next(iter(self._bindings))]
        self._bindings[n] = binding
        return binding


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
    """Smoke inference (and warm-up): a batch of the inputs' fill values; then timed runs
    (one and several rows) that seed the engine's inline decision."""
    fill = np.array([[i.fill for i in model.manifest.inputs]], np.float64)
    rows = 2 if model.batch_axis else 1
    x = np.repeat(fill, rows, axis=0)
    try:
        for _ in range(2):
            y = model.run(x)
        model.run(x[:1])
        for xs in (x, x[:1], x, x[:1]):
            start = time.thread_time()
            model.run(xs)
            model.smoke_runs.append((time.thread_time() - start, len(xs)))
    except ModelRunError as exc:
        raise ModelLoadError(f"{path}: smoke inference failed: {exc}") from exc
    if y.shape != (rows, len(model.manifest.outputs)):
        raise ModelLoadError(f"{path}: smoke inference gave shape {y.shape}")
    if not np.isfinite(y).all():
        raise ModelLoadError(f"{path}: smoke inference gave non-finite outputs {y.tolist()}")
