"""``chenxing-gateway config init`` writes a starter config that validates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway import exit_codes
from gateway.cli.config_init_cmd import packaged_text, starter_text
from gateway.cli.main import REPO_CONFIG_DIR, main
from gateway.config.loader import load_config, load_config_text
from gateway.errors import ConfigError


def test_init_writes_a_valid_commented_config(tmp_path: Path) -> None:
    out = tmp_path / "etc" / "gateway.yaml"
    result = CliRunner().invoke(main, ["config", "init", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# chenxing-edge gateway configuration")
    config = load_config(out)
    assert config.devices[0].name == "meter-1"
    result = CliRunner().invoke(main, ["validate", "-c", str(out)])
    assert result.exit_code == 0 and "valid" in result.output


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "gateway.yaml"
    out.write_text("mine\n")
    result = CliRunner().invoke(main, ["config", "init", "-o", str(out)])
    # its own exit code (not usage, not an invalid config): a provisioning script can tell
    assert result.exit_code == exit_codes.FILE_EXISTS == 9
    assert "exists; nothing written (add --force" in result.output
    assert out.read_text() == "mine\n"
    result = CliRunner().invoke(main, ["config", "init", "-o", str(out), "--force"])
    assert result.exit_code == 0 and load_config(out).gateway.id == "edge-gw-01"


@pytest.mark.parametrize("source", ["starter", "example"])
def test_sparkplug_is_shown_as_the_default_and_json_validates_as_the_alternative(
    tmp_path: Path, source: str
) -> None:
    text = starter_text() if source == "starter" else (REPO_CONFIG_DIR / "example.yaml").read_text()
    assert "\n  format: sparkplug " in text and "\n  # format: json " in text
    assert load_config_text(text, "a.yaml", tmp_path).northbound.format == "sparkplug"
    # the engineer switches to the JSON contract by swapping the two lines
    alternative = text.replace("\n  format: sparkplug ", "\n  # format: sparkplug ").replace(
        "\n  # format: json ", "\n  format: json ")
    path = tmp_path / "gateway.yaml"
    path.write_text(alternative)
    result = CliRunner().invoke(main, ["validate", "-c", str(path)])
    assert result.exit_code == 0 and "valid" in result.output, result.output
    assert load_config(path).northbound.format == "json"


def test_a_config_without_a_format_is_sparkplug() -> None:
    text = ("gateway: {id: gw, site: s, line: l}\ndevices:\n  - {name: m, protocol: modbus_tcp, "
            "host: 127.0.0.1, tags: [{name: v, address: 0, type: uint16}]}\n")
    assert load_config_text(text).northbound.format == "sparkplug"


def test_the_packaged_config_waits_for_a_device(tmp_path: Path) -> None:
    """The Debian package's /etc/chenxing/gateway.yaml: invalid only for want of a device (so
    the package does not start the service), valid once the commented device is taken in."""
    text = packaged_text()
    with pytest.raises(ConfigError) as refused:
        load_config_text(text, "gateway.yaml", tmp_path)
    assert [p.path for p in refused.value.problems] == [("devices",)]
    assert "state_dir: /var/lib/chenxing " in text and "-c THIS_FILE" not in text
    head, rest = text.split("devices: []", 1)
    devices, tail = rest.split("\nnorthbound:", 1)
    devices = re.sub(r"(?m)^  # ", "  ", devices)  # the lines, not their comments
    uncommented = f"{head}devices:{devices}\nnorthbound:{tail}"
    config = load_config_text(uncommented, "gateway.yaml", tmp_path)
    assert config.gateway.state_dir == Path("/var/lib/chenxing")
    assert [d.name for d in config.devices] == ["meter-1", "press-1"]
