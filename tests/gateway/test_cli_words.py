"""What the CLI and the docs say to a person: counts in words, an empty spool, how the demo
ends, links that stay inside the repository, and examples that match the shipped configs
(issue 19, the small findings)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from gateway.cli.config_init_cmd import starter_text
from gateway.cli.demo import _footer
from gateway.cli.main import main
from gateway.config.loader import load_config_text
from gateway.northbound.spool import DiskSpool, SpoolLimits
from gateway.plural import plural

REPO = Path(__file__).resolve().parents[2]


def write_config(tmp: Path, devices: int = 1, tags: int = 1) -> Path:
    body = {
        "gateway": {"id": "gw", "site": "s", "line": "l", "state_dir": "state"},
        "devices": [{"name": f"dev{d}", "protocol": "modbus_tcp", "host": "127.0.0.1",
                     "tags": [{"name": f"x{t}", "address": t, "type": "int16"}
                              for t in range(tags)]} for d in range(devices)],
    }  # fmt: skip
    path = tmp / "gateway.yaml"
    path.write_text(json.dumps(body))
    return path


def test_plural() -> None:
    assert [plural(n, "device") for n in (0, 1, 2)] == ["0 devices", "1 device", "2 devices"]
    assert plural(1, "run") == "1 run" and plural(3, "entry", "entries") == "3 entries"


def test_validate_counts_in_words(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", "-c", str(write_config(tmp_path, 1, 1))])
    assert result.exit_code == 0 and result.output.endswith(": valid (1 device, 1 tag)\n")
    result = CliRunner().invoke(main, ["validate", "-c", str(write_config(tmp_path, 2, 3))])
    assert result.output.endswith(": valid (2 devices, 6 tags)\n")


def test_spool_stats_of_an_empty_spool_gives_no_age(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    spool = DiskSpool(tmp_path / "state" / "spool.db", SpoolLimits(1 << 20, 3600.0))
    spool.close()
    result = CliRunner().invoke(main, ["spool", "stats", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "messages   0 " in result.output
    assert "s ago" not in result.output and "oldest     - (no message waits)" in result.output


def test_the_demo_says_how_it_ends() -> None:
    assert _footer(None) == "Ctrl-C to stop"
    timed = _footer(10.0)
    assert "after 10 s" in timed and not timed.startswith("Ctrl-C to stop")


_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_docs_link_only_files_inside_the_repository() -> None:
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for doc in docs:
        for target in _LINK.findall(doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(REPO), f"{doc.name} links {target}: outside the repository"
            assert path.exists(), f"{doc.name} links {target}: no such file"


def test_readme_examples_name_the_starter_configs_devices() -> None:
    """`certs -c gateway.yaml --device NAME` in the README names an OPC UA device of the
    starter config written by `config init` (its commented block)."""
    readme = (REPO / "README.md").read_text()
    named = re.findall(r"certs -c gateway\.yaml --device (\S+)", readme)
    assert named
    starter = starter_text()
    for name in named:
        assert re.search(rf"#?\s*- name: {re.escape(name)}\s.*\n.*protocol: opcua", starter), name


def test_example_config_promises_nothing_for_later(tmp_path: Path) -> None:
    text = (REPO / "config" / "example.yaml").read_text()
    assert "later" not in text.lower()
    assert load_config_text(text, "example.yaml", tmp_path).gateway.id == "press-line-gw-07"
