"""Config loading: valid files load; every kind of bad input names file, line and key."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.config.loader import check_secrets, load_config, load_config_text
from gateway.config.schema import schema_text
from gateway.config.secrets import resolve_secret
from gateway.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

GOOD = textwrap.dedent("""\
    gateway:
      id: gw-1
      site: plant
      line: line-1
    devices:
      - name: meter
        protocol: modbus_tcp
        host: 127.0.0.1
        tags:
          - name: voltage
            table: input
            address: 0
            type: float32
            unit: V
""")


def problems(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "cfg.yaml")
    return [(p.line, p.path_text, p.message) for p in info.value.problems]


def test_good_config_loads_with_defaults() -> None:
    cfg = load_config_text(GOOD, "cfg.yaml")
    device = cfg.devices[0]
    assert device.port == 502 and device.unit_id == 1 and device.poll_interval == 1.0
    assert device.tags[0].byte_order == "ABCD"
    assert cfg.northbound.mqtt.qos == 1
    assert cfg.http.bind == "127.0.0.1"


def test_unknown_key_names_line_and_path() -> None:
    text = GOOD.replace("    host: 127.0.0.1\n", "    host: 127.0.0.1\n    hots: 1\n")
    assert problems(text) == [(9, "devices[0].hots", "unknown key 'hots'; did you mean 'host'?")]


def test_wrong_type_names_line_and_value() -> None:
    text = GOOD.replace("address: 0", "address: zero")
    [(line, path, message)] = problems(text)
    assert (line, path) == (12, "devices[0].tags[0].address")
    assert message == "expected a whole number (got 'zero')"


def test_missing_device_field_reported_at_the_device() -> None:
    text = GOOD.replace("    host: 127.0.0.1\n", "")
    assert problems(text) == [(6, "devices[0].host", "required key is missing")]


def test_duplicate_tag_name_points_at_both_lines() -> None:
    text = (
        GOOD
        + "      - name: voltage\n        table: input\n        address: 2\n        type: float32\n"
    )
    [(line, path, message)] = problems(text)
    assert (line, path) == (15, "devices[0].tags[1].name")
    assert "duplicate tag name 'voltage'" in message and "line 10" in message


def test_duplicate_yaml_key_is_an_error() -> None:
    text = GOOD.replace("  line: line-1\n", "  line: line-1\n  site: other\n")
    assert problems(text) == [(5, "gateway.site", "duplicate key (first on line 3)")]


def test_broken_yaml_gives_syntax_error_with_line() -> None:
    text = GOOD.replace("        unit: V\n", "        unit: [V\n")
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "cfg.yaml")
    [problem] = info.value.problems
    assert (problem.line, problem.column, problem.path) == (14, 15, ())  # where the '[' opened
    assert problem.message.startswith("YAML syntax error: the '[' list opened here")
    assert str(problem).splitlines()[1:3] == ["    14 |         unit: [V",
                                              "       |               ^"]


def test_control_character_gives_its_line() -> None:
    text = GOOD.replace("  line: line-1\n", "  line: line\x07-1\n")
    [(line, path, message)] = problems(text)
    assert (line, path) == (4, "(top level)") and "#x0007 is not allowed" in message


def test_all_errors_are_reported_together_sorted_by_line() -> None:
    text = (
        GOOD.replace("site: plant", "site: plant\n  colour: red")
        .replace("type: float32", "type: float99")
        .replace("    host: 127.0.0.1\n", "    host: 127.0.0.1\n    port: 70000\n")
    )
    found = problems(text)
    assert [p for _, p, _ in found] == [
        "gateway.colour",
        "devices[0].port",
        "devices[0].tags[0].type",
    ]
    assert [line for line, _, _ in found] == sorted(line for line, _, _ in found)


def test_unknown_protocol_is_named() -> None:
    text = GOOD.replace("protocol: modbus_tcp", "protocol: profibus")
    [(line, path, message)] = problems(text)
    assert (line, path) == (7, "devices[0].protocol")
    assert message.startswith("unknown protocol 'profibus' (one of modbus_tcp, modbus_rtu, ")


def test_inline_secret_refused_without_echoing_it() -> None:
    text = GOOD + "northbound:\n  mqtt:\n    password: hunter2\n"
    [(line, path, message)] = problems(text)
    assert (line, path) == (17, "northbound.mqtt.password")
    assert "inline secrets are not allowed" in message and "hunter2" not in message


def test_secret_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    text = (
        GOOD + "northbound:\n  mqtt:\n    password: {file: pw}\nhttp:\n  token: {env: GW_TOKEN}\n"
    )
    monkeypatch.delenv("GW_TOKEN", raising=False)
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.northbound.mqtt.password is not None
    assert resolve_secret(cfg.northbound.mqtt.password, tmp_path) == "s3cret"
    with pytest.raises(ConfigError) as info:
        check_secrets(cfg, path)
    [problem] = info.value.problems
    assert str(problem) == f"{path}:19: http.token: environment variable GW_TOKEN is not set"
    monkeypatch.setenv("GW_TOKEN", "t")
    check_secrets(cfg, path)


def test_writable_tag_needs_range_and_register_type_must_fit() -> None:
    text = GOOD.replace("        unit: V\n", "        unit: V\n        writable: true\n")
    [(_, path, message)] = problems(text.replace("table: input", "table: holding"))
    assert path == "devices[0].tags[0]" and "needs a range" in message
    [(_, path, message)] = problems(
        text.replace("writable: true", "writable: true\n        range: [0, 1]")
    )
    assert path == "devices[0].tags[0]" and "read-only" in message  # input registers
    text = GOOD.replace("table: input", "table: coil")
    [(_, _, message)] = problems(text)
    assert "must be bool" in message


def test_http_access_settings() -> None:
    """Off loopback users log in (docs/security.md): no token is needed any more; the token
    is never admin; TLS needs both files; one audit log."""
    config = load_config_text(GOOD + "http:\n  bind: 0.0.0.0\n")
    assert config.http.token is None and config.http.auth.anonymous_loopback == "operator"
    [(_, path, message)] = problems(GOOD + "http:\n  token_role: admin\n")
    assert path == "http.token_role" and "one of viewer, operator" in message
    [(_, path, message)] = problems(GOOD + "http:\n  tls: {certificate: a.pem}\n")
    assert path == "http.tls.key" and "required" in message.lower()
    [(_, path, message)] = problems(GOOD + "http:\n  auth: {min_password_length: 4}\n")
    assert path == "http.auth.min_password_length"
    [(_, path, message)] = problems(
        GOOD + "audit: {path: a.log}\ncommands: {audit_log: b.log}\n")
    assert "two audit logs" in message
    base = Path("/etc/chenxing")
    config = load_config_text(GOOD + "http:\n  tls: {certificate: c.pem, key: c.key}\n"
                              "  auth: {users_file: u.json}\naudit: {path: a.log}\n",
                              base_dir=base)
    assert config.http.tls is not None and config.http.tls.certificate == base / "c.pem"
    assert config.http.auth.users_file == base / "u.json"
    assert config.audit_path() == base / "a.log"


def test_durations_accept_units() -> None:
    text = GOOD.replace("    host: 127.0.0.1\n", "    host: 127.0.0.1\n    poll_interval: 250ms\n")
    assert load_config_text(text).devices[0].poll_interval == pytest.approx(0.25)
    [(_, path, message)] = problems(text.replace("250ms", "fast"))
    assert path == "devices[0].poll_interval" and "invalid duration" in message


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
    assert problems("- just\n- a list\n") == [
        (1, "(top level)", "the top level must be a mapping of keys")
    ]
    assert problems("") == [(1, "(top level)", "the file is empty")]


@pytest.mark.parametrize("name", ["demo.yaml", "example.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = load_config(REPO / "config" / name)
    assert cfg.devices


def test_committed_schema_is_fresh() -> None:
    committed = (REPO / "config" / "gateway.schema.json").read_text()
    assert committed == schema_text(), (
        "config/gateway.schema.json is stale: run "
        "`chenxing-gateway config schema -o config/gateway.schema.json`"
    )


def test_validate_cli_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("address: 0", "address: -1") + "extra: 1\n")
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "validate", "-c", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == 1
    assert "2 configuration errors" in run.stderr
    assert f"{bad}:12: devices[0].tags[0].address" in run.stderr
    assert f"{bad}:15: extra: unknown key" in run.stderr
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "validate", "-c", str(good)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr
    assert "valid (1 device, 1 tag)" in run.stdout
