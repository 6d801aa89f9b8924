"""``northbound.spool`` config; ``chenxing-gateway spool stats|peek|purge`` on real spool files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway import exit_codes
from gateway.cli.main import main
from gateway.config.loader import load_config
from gateway.errors import ConfigError
from gateway.northbound.message import OutboundMessage
from gateway.northbound.spool import DiskSpool, SpoolLimits


def write_config(tmp: Path, spool: dict[str, object] | None = None) -> Path:
    body = {
        "gateway": {"id": "gw", "site": "s", "line": "l", "state_dir": "state"},
        "devices": [{"name": "dev", "protocol": "modbus_tcp", "host": "127.0.0.1",
                     "tags": [{"name": "x", "address": 0, "type": "int16"}]}],
        "northbound": {"spool": spool or {}},
    }  # fmt: skip
    path = tmp / "gateway.yaml"
    path.write_text(json.dumps(body))
    return path


def fill(path: Path, n: int, size: int = 100) -> None:
    spool = DiskSpool(path, SpoolLimits(1 << 20, 3600.0))
    spool.put_many(
        [OutboundMessage(f"c/v1/s/l/gw/data{i}", b"x" * size, "data", samples=3, seq=40 + i)
         for i in range(n)]
    )  # fmt: skip
    spool.close()


def test_spool_config_defaults_units_and_relative_path(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path))
    spool = cfg.northbound.spool
    assert spool.enabled and spool.max_bytes == 256 * 2**20 and spool.max_age == 168 * 3600
    assert spool.resolved_path(cfg.gateway.state_dir) == tmp_path / "state" / "spool.db"
    cfg = load_config(write_config(
        tmp_path, {"path": "spool/x.db", "max_bytes": "64MiB", "max_age": "2h",
                   "replay_rate": 5},
    ))  # fmt: skip
    spool = cfg.northbound.spool
    assert spool.max_bytes == 64 * 2**20 and spool.max_age == 7200.0
    assert spool.resolved_path(cfg.gateway.state_dir) == tmp_path / "spool" / "x.db"
    assert load_config(write_config(tmp_path, {"max_bytes": 1000})).northbound.spool.max_bytes \
        == 1000


def test_bad_spool_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path, {"max_bytes": "lots", "replay_rate": 0}))
    text = str(info.value)
    assert "northbound.spool.max_bytes" in text and "invalid size 'lots'" in text
    assert "northbound.spool.replay_rate" in text


def test_stats_and_peek_read_the_spool_even_while_a_gateway_holds_it(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    runner = CliRunner()
    empty = runner.invoke(main, ["spool", "stats", "-c", str(config)])
    assert empty.exit_code == 0 and "no file yet" in empty.output
    path = tmp_path / "state" / "spool.db"
    fill(path, 5)
    holder = DiskSpool(path, SpoolLimits(1 << 20, 3600.0))  # a running gateway
    try:
        result = runner.invoke(main, ["spool", "stats", "--json", "-c", str(config)])
        assert result.exit_code == 0, result.output
        figures = json.loads(result.output)
        assert (figures["messages"], figures["samples"]) == (5, 15)
        assert (figures["seq_first"], figures["seq_last"]) == (40, 44)
        assert figures["held_by"].startswith("pid ")
        text = runner.invoke(main, ["spool", "stats", "-c", str(config)]).output
        assert "messages   5 (15 samples)" in text and "in use by pid" in text
        peek = runner.invoke(main, ["spool", "peek", "-c", str(config), "-n", "2"])
        assert peek.exit_code == 0
        lines = peek.output.splitlines()
        assert len(lines) == 3 and "seq" in lines[0]
        assert lines[1].split()[1:4] == ["40", "117", "3"] and lines[1].endswith("data0")
    finally:
        holder.close()


def test_purge_needs_yes_without_a_terminal_and_no_running_gateway(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    path = tmp_path / "state" / "spool.db"
    fill(path, 4, size=DiskSpool.INLINE_MAX + 1)  # payloads in a segment file
    segments = tmp_path / "state" / "spool.db.payloads"
    assert list(segments.glob("0*.seg"))
    runner = CliRunner()
    refused = runner.invoke(main, ["spool", "purge", "-c", str(config)])
    assert refused.exit_code == exit_codes.USAGE and "--yes" in refused.output
    holder = DiskSpool(path, SpoolLimits(1 << 20, 3600.0))
    try:
        busy = runner.invoke(main, ["spool", "purge", "--yes", "-c", str(config)])
        assert busy.exit_code == exit_codes.RUNTIME_FAILURE and "in use by pid" in busy.output
    finally:
        holder.close()
    done = runner.invoke(main, ["spool", "purge", "--yes", "-c", str(config)])
    assert done.exit_code == 0 and "purged 4 messages (12 samples)" in done.output
    assert not list(segments.glob("*.seg"))
    spool = DiskSpool(path, SpoolLimits(1 << 20, 3600.0))  # the next gateway reports it
    stats = spool.stats()
    assert stats.messages == 0
    assert (stats.drops["purged"].messages, stats.drops["purged"].samples) == (4, 12)
    spool.close()


def test_gateway_uses_the_spool_by_default_and_refuses_one_held_by_another(
    tmp_path: Path,
) -> None:
    from gateway.northbound.outbox import MemoryOutbox
    from gateway.runtime.gateway import Gateway

    cfg = load_config(write_config(tmp_path))
    outbox = Gateway(cfg)._build_outbox()
    assert isinstance(outbox, DiskSpool) and outbox.path == tmp_path / "state" / "spool.db"
    try:
        with pytest.raises(OSError, match=r"in use by pid .* another gateway running"):
            Gateway(cfg)._build_outbox()
    finally:
        outbox.close()
    disabled = load_config(write_config(tmp_path, {"enabled": False}))
    assert isinstance(Gateway(disabled)._build_outbox(), MemoryOutbox)
