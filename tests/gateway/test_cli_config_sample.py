"""``config sample [--driver NAME]`` and the default config path (issue 19, item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from drivers.registry import REGISTRY
from gateway import exit_codes
from gateway.cli.config_option import CONFIG_ENV, DEFAULT_CONFIG
from gateway.cli.config_sample_cmd import ExampleConfig, driver_names, example_text
from gateway.cli.main import main
from gateway.config.loader import load_config_text

from .test_cli_words import write_config


def test_the_example_has_a_device_block_for_every_registered_protocol() -> None:
    assert set(ExampleConfig.parse(example_text()).protocols()) == set(REGISTRY.protocols)


def test_the_whole_sample_is_the_example_config() -> None:
    result = CliRunner().invoke(main, ["config", "sample"])
    assert result.exit_code == 0 and result.output == example_text()


@pytest.mark.parametrize("driver", sorted(driver_names()))
def test_a_drivers_sample_holds_its_devices_only_and_validates(driver: str,
                                                               tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["config", "sample", "--driver", driver])
    assert result.exit_code == 0, result.output
    config = load_config_text(result.output, "sample.yaml", tmp_path)
    assert {d.protocol for d in config.devices} == driver_names()[driver]
    assert "# --- northbound" in result.output  # the rest of the sample, comments and all


def test_an_unknown_driver_is_a_usage_error_listing_the_names() -> None:
    result = CliRunner().invoke(main, ["config", "sample", "--driver", "modbsu"])
    assert result.exit_code == exit_codes.USAGE
    assert "'modbsu' is no registered driver" in result.output and "modbus_tcp" in result.output
    listed = CliRunner().invoke(main, ["config", "sample", "--list"])
    assert listed.output.splitlines()[0].split()[0] == sorted(driver_names())[0]


def test_without_c_the_config_is_chenxing_config(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(write_config(tmp_path)))
    result = CliRunner().invoke(main, ["validate"])
    assert result.exit_code == 0 and "gateway.yaml: valid (1 device, 1 tag)" in result.output


def test_without_c_or_chenxing_config_it_is_etc_chenxing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    result = CliRunner().invoke(main, ["validate"])
    if DEFAULT_CONFIG.exists():  # an installed gateway on this machine: its config is read
        assert str(DEFAULT_CONFIG) in result.output
        return
    assert result.exit_code == exit_codes.USAGE
    assert f"no config file: {DEFAULT_CONFIG} (the default without -c) does not exist" \
        in result.output
    assert f"config init -o {DEFAULT_CONFIG}" in result.output


def test_a_missing_chenxing_config_is_named(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "nowhere.yaml"))
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == exit_codes.USAGE
    assert f"{tmp_path / 'nowhere.yaml'} (${CONFIG_ENV} without -c) does not exist" \
        in result.output
