"""``chenxing-gateway config init`` writes a starter config that validates."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gateway.cli import exit_codes
from gateway.cli.main import main
from gateway.config.loader import load_config


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
    assert result.exit_code == exit_codes.USAGE
    assert "--force" in result.output and out.read_text() == "mine\n"
    result = CliRunner().invoke(main, ["config", "init", "-o", str(out), "--force"])
    assert result.exit_code == 0 and load_config(out).gateway.id == "edge-gw-01"
