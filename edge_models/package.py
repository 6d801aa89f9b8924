"""A model package in a bundle: one ``.onnx`` and its manifest, which must agree with each other.

The payload check of kind ``model`` (:data:`gateway.bundles.PayloadCheck`). The bundle
holds exactly one ``.onnx`` file and one manifest (``.yaml``); the manifest validates
(:mod:`edge_models.manifest`) and matches the bundle and the model: the same name and
version as the bundle's manifest, the ``.onnx`` file it names (``file``, default
``{manifest name}.onnx``) is the one in the bundle, and its ``sha256`` is that file's.
Anything else is refused as ``payload_mismatch``: a model is never deployed under a
manifest written for another. :func:`check_model_package` then loads the model as the
runtime would (:func:`edge_models.runtime.load_model`: its input and outputs against
the manifest's, a smoke inference), from a temporary folder.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge_models.manifest import Manifest, parse_manifest
from gateway.bundles import VerifiedBundle
from gateway.errors import BundleRefused, ConfigError, ModelLoadError


@dataclass(frozen=True, slots=True)
class ModelPackage:
    """A checked model package: the manifest and the ``.onnx`` bytes with their file names."""

    manifest: Manifest
    manifest_file: str
    manifest_text: str
    model_file: str
    model: bytes


def _mismatch(detail: str) -> BundleRefused:
    return BundleRefused("payload_mismatch", detail)


def model_package(bundle: VerifiedBundle) -> ModelPackage:
    """The model package in ``bundle``; :class:`BundleRefused` when manifest and model disagree."""
    onnx = [n for n in bundle.files if n.endswith(".onnx")]
    manifests = [n for n in bundle.files if n.endswith((".yaml", ".yml"))]
    if len(onnx) != 1 or len(manifests) != 1 or len(bundle.files) != 2:
        raise _mismatch("a model bundle holds exactly one .onnx and one manifest (.yaml); "
                        f"this one has {', '.join(sorted(bundle.files))}")
    manifest_file, model_file = manifests[0], onnx[0]
    try:
        text = bundle.files[manifest_file].decode("utf-8")
        manifest = parse_manifest(text, manifest_file)
    except UnicodeDecodeError as exc:
        raise _mismatch(f"{manifest_file}: not UTF-8 text: {exc}") from None
    except ConfigError as exc:
        raise _mismatch(f"the model manifest is invalid: {exc}") from None
    if manifest.name != bundle.name:
        raise _mismatch(f"{manifest_file} is the manifest of model {manifest.name!r}, the "
                        f"bundle is {bundle.name!r}")
    if manifest.version != bundle.version.text:
        raise _mismatch(f"{manifest_file} says version {manifest.version}, the bundle "
                        f"{bundle.version}")
    named = manifest.file or re.sub(r"\.ya?ml$", "", manifest_file) + ".onnx"
    if named != model_file:
        raise _mismatch(f"{manifest_file} describes {named}, the bundle holds {model_file}")
    model = bundle.files[model_file]
    actual = hashlib.sha256(model).hexdigest()
    if actual != manifest.sha256:
        raise _mismatch(f"{manifest_file} gives {model_file} the sha256 {manifest.sha256}, "
                        f"the file's is {actual}")
    return ModelPackage(manifest, manifest_file, text, model_file, model)


def check_model_package(bundle: VerifiedBundle) -> None:
    """The payload check of kind ``model``: the package agrees with itself and the model
    loads against its manifest."""
    from edge_models.runtime import load_model  # onnxruntime: only when a model comes

    package = model_package(bundle)
    with tempfile.TemporaryDirectory(prefix="model-bundle-") as folder:
        manifest_path = Path(folder) / package.manifest_file
        manifest_path.write_text(package.manifest_text, encoding="utf-8")
        (Path(folder) / package.model_file).write_bytes(package.model)
        try:
            load_model(package.manifest, manifest_path)
        except ModelLoadError as exc:
            raise _mismatch(f"the model does not load as its manifest says: "
                            f"{str(exc).replace(folder + '/', '')}") from None
