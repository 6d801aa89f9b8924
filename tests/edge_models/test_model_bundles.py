"""Model packages in signed bundles: an .onnx and its manifest that must agree with each other and
with the bundle (edge_models/package.py), on the shipped reference models."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_models.package import check_model_package, model_package
from gateway.bundles import AppliedVersions, BundleVerifier, Trust, build_bundle, keys
from gateway.errors import BundleRefused

REFERENCE = Path(__file__).resolve().parents[2] / "edge_models" / "reference"
KEY = keys.generate_private_key()
QUALITY_ONNX = (REFERENCE / "quality.onnx").read_bytes()
QUALITY_YAML = (REFERENCE / "quality.yaml").read_text()
ENERGY_ONNX = (REFERENCE / "energy.onnx").read_bytes()


def verify(tmp_path: Path, files: list[tuple[str, bytes]], name: str = "quality",
           version: str = "1.0.0") -> None:
    data = build_bundle("model", name, version, files, KEY, "algo")
    verifier = BundleVerifier(Trust({"algo": KEY.public_key()}, {"model": frozenset({"algo"})}),
                              AppliedVersions(tmp_path))
    verifier.verify(data, kind="model", source="test", check=check_model_package)


def mismatch(tmp_path: Path, files: list[tuple[str, bytes]], **kw: str) -> str:
    with pytest.raises(BundleRefused) as exc:
        verify(tmp_path, files, **kw)
    assert exc.value.reason == "payload_mismatch", exc.value
    return exc.value.detail


def test_a_reference_model_package_verifies_and_loads(tmp_path: Path) -> None:
    data = build_bundle("model", "quality", "1.0.0", [("quality.yaml", QUALITY_YAML.encode()),
                                                      ("quality.onnx", QUALITY_ONNX)], KEY, "algo")
    verifier = BundleVerifier(Trust({"algo": KEY.public_key()}, {"model": frozenset({"algo"})}),
                              AppliedVersions(tmp_path))
    bundle = verifier.verify(data, kind="model", source="test", check=check_model_package)
    package = model_package(bundle)
    assert package.manifest.name == "quality" and package.model == QUALITY_ONNX
    assert package.model_file == "quality.onnx" and package.manifest_text == QUALITY_YAML


def test_manifest_and_model_must_agree(tmp_path: Path) -> None:
    yaml = QUALITY_YAML.encode()
    assert "model 'quality', the bundle is 'energy'" in mismatch(
        tmp_path, [("quality.yaml", yaml), ("quality.onnx", QUALITY_ONNX)], name="energy")
    assert "says version 1.0.0, the bundle 1.0.1" in mismatch(
        tmp_path, [("quality.yaml", yaml), ("quality.onnx", QUALITY_ONNX)], version="1.0.1")
    # another model under the manifest's file name: its hash gives it away
    detail = mismatch(tmp_path, [("quality.yaml", yaml), ("quality.onnx", ENERGY_ONNX)])
    assert "gives quality.onnx the sha256" in detail
    assert "describes quality.onnx, the bundle holds energy.onnx" in mismatch(
        tmp_path, [("quality.yaml", yaml), ("energy.onnx", QUALITY_ONNX)])
    assert "exactly one .onnx and one manifest" in mismatch(
        tmp_path, [("quality.yaml", yaml), ("quality.onnx", QUALITY_ONNX), ("x.txt", b"")])
    assert "exactly one .onnx and one manifest" in mismatch(tmp_path, [("quality.yaml", yaml)])


def test_a_manifest_that_does_not_validate_is_named_with_its_line(tmp_path: Path) -> None:
    broken = QUALITY_YAML.replace("trigger:", "trigger_typo:", 1).encode()
    detail = mismatch(tmp_path, [("quality.yaml", broken), ("quality.onnx", QUALITY_ONNX)])
    assert "the model manifest is invalid" in detail
    assert re.search(r"quality\.yaml:\d+: trigger_typo: unknown key", detail), detail


def test_a_manifest_the_model_does_not_fit_is_refused(tmp_path: Path) -> None:
    """Right name, version and hash, but one input fewer than the model takes: found by
    loading the model as the runtime would."""
    lines = QUALITY_YAML.splitlines(keepends=True)
    first_input = next(i for i, line in enumerate(lines) if line.lstrip().startswith("- {tag:"))
    fewer = "".join(lines[:first_input] + lines[first_input + 1:]).encode()
    detail = mismatch(tmp_path, [("quality.yaml", fewer), ("quality.onnx", QUALITY_ONNX)])
    assert "the model does not load as its manifest says" in detail
    assert "quality.onnx" in detail and "model-bundle-" not in detail
