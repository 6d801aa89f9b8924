"""Freed heap goes back to the system after a config load (issue 21): glibc keeps what a
parse freed between the objects that survive it, and the RSS stayed up by that much."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from gateway.runtime.memory import SharedKeys, give_back_freed_memory


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_memory_freed_between_survivors_goes_back_to_the_system() -> None:
    # 64 MiB of 4 KiB blocks (malloc's heap, not mmap), one in 64 kept: what a parse leaves
    blocks = [bytearray(4096) for _ in range(16384)]
    survivors = blocks[::64]
    del blocks
    before = _rss_kib()
    assert give_back_freed_memory()
    assert before - _rss_kib() > 32 * 1024  # most of the 63 MiB freed around the survivors
    assert len(survivors) == 256


def test_the_kept_config_data_has_one_string_per_key() -> None:
    """Every tag's keys are the same few strings once shared (the YAML reader makes new
    ones for each tag); values, order and the mappings themselves stay as they were."""
    from gateway.config.yaml_model import parse_yaml

    # a YAML tag sends the file to the full reader, which makes a key string per place
    # (the line reader of yaml_block shares them itself)
    text = "site: !!str plant\ndevices:\n" + "".join(
        f"  - name: d{d}\n    tags:\n" + "".join(
            f"      - name: t{i}\n        address: {i}\n        type: float32\n"
            for i in range(3)) for d in range(2))  # fmt: skip
    data = parse_yaml(text, "gateway.yaml").data
    tags = [t for d in data["devices"] for t in d["tags"]]
    assert len({id(k) for t in tags for k in t}) > 3  # as read: a string per tag and key
    before = repr(data)
    first_tag = tags[0]
    shared = SharedKeys()
    shared.share(data)
    assert repr(data) == before and data["devices"][0]["tags"][0] is first_tag
    assert len({id(k) for t in tags for k in t}) == 3  # name, address, type
    again = parse_yaml(text, "gateway.yaml").data  # the next version read
    shared.share(again)
    assert {id(k) for t in again["devices"][1]["tags"] for k in t} <= \
        {id(k) for t in tags for k in t}


def test_the_runtime_and_local_api_import_no_protobuf() -> None:
    """A gateway on the JSON contract never needs protobuf (2.3 MiB): the console's Messages
    tab imports the Sparkplug decoder when it decodes, the Sparkplug contract when built."""
    import subprocess
    import sys

    code = ("import sys, gateway.cli.main, gateway.runtime.gateway, gateway.http_api\n"
            "print(sorted(m for m in ('google.protobuf', 'asyncua', 'onnxruntime') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stderr


_LARGE_BLOCKS = """
import sys
from pathlib import Path
from gateway.runtime.memory import map_large_blocks_apart
def rss_kib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
if sys.argv[1] == "apart":
    assert map_large_blocks_apart()
first = bytearray(8 * 2**20)
del first  # glibc raises its threshold to 8 MiB here: blocks below it come from the heap
before = rss_kib()
blocks = [bytearray(256 * 1024) for _ in range(200)]  # 50 MiB, as data messages and births
pin = bytearray(4096)  # allocated from the heap after them, and it lives on
del blocks
print(rss_kib() - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_large_blocks_leave_the_rss_when_freed() -> None:
    import subprocess
    import sys

    def grown_kib(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", _LARGE_BLOCKS, mode], capture_output=True,
                              text=True, check=True)  # fmt: skip
        return int(done.stdout)

    assert grown_kib("apart") < 8 * 1024
    assert grown_kib("pooled") > 32 * 1024  # what the gateway did before


@pytest.mark.skipif(platform.python_implementation() != "CPython",
                    reason="shared key tables are CPython's")
def test_tags_keep_their_fields_in_the_shared_key_table() -> None:
    """A validated tag holds its values only (its class's key table is shared), not a dict
    of its own: ~280 bytes less a Modbus tag (issue 21); the same value in every respect."""
    import sys
    import warnings

    from drivers.modbus.config import ModbusTagConfig
    from gateway.config.device import TAG_SHARING, TagSharing

    raw = [{"name": f"t{i}", "table": "input", "address": i, "type": "float32",
            "unit": "kW", "scale": 0.5} for i in range(200)]  # fmt: skip
    context = {TAG_SHARING: TagSharing()}  # as the loader validates a file
    tags = [ModbusTagConfig.model_validate(r, context=context)  # more than the ~30 of CPython
            for r in raw]
    built = ModbusTagConfig.model_construct(**tags[-1].__dict__)  # pydantic's own dict
    tag = tags[-1]
    assert sys.getsizeof(tag.__dict__) < sys.getsizeof(built.__dict__) * 2 // 3
    assert tag == built and hash(tag) == hash(built)
    assert tag.model_dump() == built.model_dump() == {**built.__dict__}
    assert tag.__pydantic_fields_set__ == {"name", "table", "address", "type", "unit", "scale"}
    assert tag.address == 199 and tag.published_type.value == "float64"
    assert repr(tag) == repr(built)
    with warnings.catch_warnings():  # made in code (no file): the instance __init__ made
        warnings.simplefilter("error")
        made = ModbusTagConfig(**raw[-1])
    assert made == tag


def test_tags_written_with_the_same_keys_share_one_set_of_them() -> None:
    """pydantic's set of the keys written for a tag (216 bytes) is shared by the tags of a
    file written with the same keys, as they are validated (issue 21)."""
    from gateway.config.loader import load_config_text

    tags = "".join(f"      - {{name: t{i}, table: input, address: {i}, type: float32}}\n"
                   for i in range(5)) + "      - {name: x, address: 9, type: int16}\n"
    text = ("gateway: {id: gw, site: s, line: l}\nnorthbound: {mqtt: {host: 127.0.0.1}}\ndevices:\n"
            "  - name: d\n    protocol: modbus_tcp\n    host: 127.0.0.1\n    tags:\n" + tags)
    config = load_config_text(text)
    sets = [t.__pydantic_fields_set__ for t in config.devices[0].tags]
    assert all(s is sets[0] for s in sets[:5]) and sets[0] == {"name", "table", "address", "type"}
    assert sets[5] == {"name", "address", "type"} and sets[5] is not sets[0]
