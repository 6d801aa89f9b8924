"""Loading and validating models: hash, names, shapes, dtypes, smoke inference; batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_models.manifest import load_manifest, parse_manifest
from edge_models.runtime import load_model, session_options
from gateway.errors import ModelLoadError

from .helpers import IDENTITY, REFERENCE, identity_manifest, sha256, write_model


def load(path: Path):  # type: ignore[no-untyped-def]
    return load_model(load_manifest(path), path)


def test_reference_models_load_and_batch() -> None:
    quality = load(REFERENCE / "quality.yaml")
    assert quality.batch_axis and quality.describe()["version"] == "1.0.0"
    x = np.array([[230.0, 50.0, 1200.0, 3.0, 16.0], [205.0, 50.0, 1200.0, 3.0, 16.0],
                  [230.0, 50.0, 1060.0, 1.4, 16.0]])
    batched = quality.run(x)
    rows = np.concatenate([quality.run(x[i : i + 1]) for i in range(len(x))])
    assert batched.shape == (3, 1) and np.allclose(batched, rows)
    assert batched[0, 0] < 0.1 < 0.6 < batched[1, 0] and batched[2, 0] > 0.5
    energy = load(REFERENCE / "energy.yaml")
    y = energy.run(np.array([[2.0, 2.0, 25.0], [2.0, 2.0, 40.0], [0.0, 0.0, 0.02]]))
    assert y.shape == (3, 3)
    assert abs(y[0, 0] - 25.0) < 1.0 and y[1, 2] > 4.0 > y[0, 2]  # expected, anomaly score


def test_session_is_tuned_for_small_cpus() -> None:
    opts = session_options()
    assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    model = load(REFERENCE / "energy_per_part.yaml")
    got = model.session.get_session_options()
    assert got.intra_op_num_threads == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sha256": "ab" * 32}, "sha256 is"),
        ({"input": "x"}, "the model's inputs are ['features']"),
        ({"inputs": [{"tag": "plc.Power", "aggregation": "mean", "window": "5s"}] * 2},
         "expected [batch, 2]"),
        ({"outputs": [{"name": "v", "onnx": "probability"}]}, "no output 'probability'"),
        ({"outputs": [{"name": "v", "onnx": "kwh", "index": 3}]}, "reads column 3"),
    ],
)
def test_manifest_that_does_not_match_its_model(tmp_path: Path, change: dict, reason: str
                                                ) -> None:
    path = write_model(tmp_path, "m", identity_manifest(**change))
    with pytest.raises(ModelLoadError) as exc:
        load(path)
    assert reason in str(exc.value)
    assert "m.onnx" in str(exc.value)


def test_corrupt_and_missing_model_files(tmp_path: Path) -> None:
    garbage = b"\x08\x07this is not a protobuf" * 10
    path = write_model(tmp_path, "bad", identity_manifest(
        sha256=__import__("hashlib").sha256(garbage).hexdigest()), onnx=garbage)
    with pytest.raises(ModelLoadError, match="not a loadable ONNX model"):
        load(path)
    (tmp_path / "bad.onnx").unlink()
    with pytest.raises(ModelLoadError, match="cannot read the model"):
        load(path)


def test_smoke_inference_must_be_finite(tmp_path: Path) -> None:
    # the quality model fed NaN fill values: the smoke inference is not finite
    m = load_manifest(REFERENCE / "quality.yaml")
    text = (REFERENCE / "quality.yaml").read_text().replace(
        "aggregation: last, window: cycle}", "aggregation: last, window: cycle, fill: .nan}")
    manifest = parse_manifest(text, "q.yaml")
    assert manifest.inputs[-1].fill != manifest.inputs[-1].fill
    (tmp_path / "quality.onnx").write_bytes((REFERENCE / "quality.onnx").read_bytes())
    with pytest.raises(ModelLoadError, match="non-finite"):
        load_model(manifest, tmp_path / "quality.yaml")
    assert m.sha256 == sha256(REFERENCE / "quality.onnx") == manifest.sha256
    assert IDENTITY.is_file()


def test_running_models_never_needs_the_train_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name == 'onnx' or name.startswith('onnx.') or name.startswith('sklearn'):\n"
        "        raise ImportError('train extra used at run time: ' + name)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        "from pathlib import Path\n"
        "from edge_models.lifecycle import scan_manifests\n"
        "from edge_models.manifest import load_manifest\n"
        "from edge_models.runtime import load_model\n"
        "p = Path(sys.argv[1]) / 'quality.yaml'\n"
        "load_model(load_manifest(p), p)\n"
        "print(len(scan_manifests(Path(sys.argv[1]))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(REFERENCE)], capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "3"


def test_bound_runs_match_plain_session_runs() -> None:
    rng = np.random.default_rng(5)
    for name in ("quality", "energy", "energy_per_part"):
        model = load(REFERENCE / f"{name}.yaml")
        k = len(model.manifest.inputs)
        for n in (1, 3, 100, 1, 3):  # bindings reused across calls see the new inputs
            x = rng.normal(10.0, 3.0, (n, k))
            raw = model.session.run(model.output_names,
                                    {model.manifest.input: x.astype(model.input_dtype)})
            by_name = dict(zip(model.output_names, raw, strict=True))
            want = np.stack([by_name[o.onnx].reshape(n, -1)[:, o.index]
                             for o in model.manifest.outputs], axis=1)
            got = model.run(x)
            assert got.dtype == np.float64 and got.shape == want.shape
            assert np.array_equal(got, want)


def test_a_session_that_cannot_be_bound_runs_plainly() -> None:
    model = load(REFERENCE / "energy_per_part.yaml")
    real = model.session

    class Plain:  # no io_binding: e.g. a wrapper around a session
        def run(self, names: list[str], feed: dict) -> list:
            return real.run(names, feed)

    model.session = Plain()  # type: ignore[assignment]
    assert model.run(np.array([[1.5], [2.5]])).tolist() == [[1.5], [2.5]]  # an identity graph
    assert model._bindings is None  # the plain path was taken
