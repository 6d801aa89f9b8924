"""A file is validated against the device configs of the protocols it names only: the same
config and the same problems (file, line, key, words) as against the whole union, and the
other drivers' validators are not built."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.registry import REGISTRY
from gateway.config import loader
from gateway.config.loader import load_config_text
from gateway.config.models import GatewayConfig
from gateway.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((REPO / "config" / "example.yaml").read_text(encoding="utf-8"))


def _outcome(text: str) -> object:
    try:
        config = load_config_text(text, "cfg.yaml", Path("/"))
    except ConfigError as exc:
        return [(p.file, p.line, p.path_text, p.message) for p in exc.problems]
    return config.model_dump()


def _mutants() -> list[dict[str, Any]]:
    """Each device of the example alone in a file, as it is and broken one key at a time
    (an unknown key, a wrong type, a key left out), in the device and in its first tag; the
    whole example with a broken device; a device of an unknown protocol beside good ones."""
    files: list[dict[str, Any]] = []
    for device in EXAMPLE["devices"]:
        alone = {**EXAMPLE, "devices": [device]}
        files.append(alone)
        targets: list[tuple[str, ...]] = [()]
        if isinstance(device.get("tags"), list) and device["tags"]:
            targets.append(("tags",))
        for where in targets:
            block = device if not where else device["tags"][0]
            keys = [k for k in block if k not in ("protocol", "tags")]
            for change in ("unknown", *(f"type:{k}" for k in keys), *(f"drop:{k}" for k in keys)):
                broken = copy.deepcopy(device)
                target = broken if not where else broken["tags"][0]
                if change == "unknown":
                    target["bogus_key"] = 1
                elif change.startswith("type:"):
                    target[change[5:]] = [[1]]
                else:
                    del target[change[5:]]
                files.append({**EXAMPLE, "devices": [broken]})
                if change == "unknown":
                    files.append({**EXAMPLE, "devices": [*EXAMPLE["devices"], broken]})
    files.append({**EXAMPLE, "devices": [*EXAMPLE["devices"][:1],
                                         {**EXAMPLE["devices"][0], "name": "x",
                                          "protocol": "modbus_tpc"}]})
    return files


def test_a_file_reads_as_against_the_whole_union(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [yaml.safe_dump(data, sort_keys=False) for data in _mutants()]
    assert len(texts) > 150
    narrowed = [_outcome(text) for text in texts]
    monkeypatch.setattr(loader, "_model_of_file", lambda data, drivers: GatewayConfig)
    different = []
    for text, outcome in zip(texts, narrowed, strict=True):
        whole = _outcome(text)
        if outcome != whole:
            different.append((text, outcome, whole))
    assert not different, different[0]


def test_the_narrowed_model_is_one_per_set_of_drivers() -> None:
    modbus = REGISTRY.narrowed(["modbus_tcp"])
    assert modbus is REGISTRY.narrowed(["modbus_tcp"])
    assert modbus.protocols == ("modbus_tcp",)
    assert REGISTRY.narrowed(REGISTRY.protocols) is REGISTRY
    with pytest.raises(KeyError):
        REGISTRY.narrowed(["no_such_protocol"])


def test_a_modbus_file_builds_no_other_drivers_validators() -> None:
    code = (
        "from pathlib import Path\n"
        "from drivers.registry import REGISTRY\n"
        "from gateway.config.loader import load_config_text\n"
        "import tests.gateway.test_config as t\n"
        "config = load_config_text(t.GOOD, 'cfg.yaml', Path('/'))\n"
        "built = sorted(r.config.__name__ for r in REGISTRY.registrations\n"
        "               if r.config.__pydantic_complete__)\n"
        "print(type(config).__pydantic_complete__, built)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True)
    assert done.stdout.split() == ["True", "[]"], done.stdout + done.stderr
