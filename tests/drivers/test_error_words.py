"""Every error counter a driver can produce has words (drivers/error_words.py).

The names are found in the drivers' code, not in a list kept by hand: every
``<something>.errors[KEY] += n`` in ``drivers/`` and ``firmware_bridge/``, with KEY a
name, an f-string family (``exception_{code}``, ``frame_{reason}``), the ``counter`` of
an error class of gateway/errors.py (``RequestFailed("timeout", ...)``) or an OPC UA
status. A counter added without words here fails; so does a counter built in a way this
test does not know yet (teach it, and give the counter words).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import pytest

from drivers.error_words import COUNTER_WORDS, FRAME_REASONS, describe, describe_errors, has_words

ROOT = Path(__file__).resolve().parents[2]
#: the drivers, and the error classes they count by (``counter``: gateway/errors.py)
DRIVER_CODE = [*sorted(p for folder in ("drivers", "firmware_bridge")
                       for p in (ROOT / folder).rglob("*.py")), ROOT / "gateway" / "errors.py"]


@dataclass(frozen=True, slots=True)
class Site:
    """Where a counter is counted, and the expression naming it."""

    path: Path
    line: int
    key: ast.expr

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {ast.unparse(self.key)}"


def _trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(encoding="utf-8")) for path in DRIVER_CODE}


def _counts_into_errors(target: ast.expr) -> bool:
    """``x.errors[k]``, ``x.units[u].errors[k]``: a driver's or a unit's error counter."""
    return (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Attribute)
            and target.value.attr == "errors")


def counting_sites(trees: dict[Path, ast.Module]) -> list[Site]:
    sites = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.AugAssign) and _counts_into_errors(node.target):
                assert isinstance(node.target, ast.Subscript)
                sites.append(Site(path, node.lineno, node.target.slice))
    return sites


def counter_classes(trees: dict[Path, ast.Module]) -> set[str]:
    """Error classes (and helpers) whose first argument is a counter name."""
    names = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                init = next((f for f in node.body
                             if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
                if init is not None and [a.arg for a in init.args.args[1:2]] == ["counter"]:
                    names.add(node.name)
    return names


def constructed_counters(trees: dict[Path, ast.Module], classes: set[str]) -> list[Site]:
    """The first argument of every construction of a class with a ``counter``."""
    sites = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in classes and node.args):
                sites.append(Site(path, node.lineno, node.args[0]))
    return sites


def modbus_exception_names() -> list[str]:
    from drivers.modbus.pymodbus_adapter import EXCEPTION_NAMES

    return [f"exception_{code}" for code in [*EXCEPTION_NAMES, 12, 255]]  # also undefined codes


def mc_end_code_names() -> list[str]:
    from drivers.mc.end_codes import END_CODE_NAMES, counter_of

    return [counter_of(code) for code in [*END_CODE_NAMES, 0x4FFF, 0xC0FF]]  # also unnamed ones


def serial_line_frame_names() -> list[str]:
    from drivers.serial_line.parsing import FrameReason

    return [f"frame_{reason}" for reason in get_args(FrameReason)]


def mcu_node_frame_names() -> list[str]:
    from firmware_bridge.frames import BadFrame

    return [f"frame_{reason.value}" for reason in BadFrame]


def opcua_status_names() -> list[str]:
    from drivers.opcua.asyncua_adapter import status_counter, status_names

    codes = [c for c in status_names() if c >> 30]  # not good: bad and uncertain
    return [status_counter(c) for c in [*codes, 0x80FF0000, 0x40FF0000]]  # also unknown ones


def fins_end_code_names() -> list[str]:
    from drivers.fins.frames import END_CODES

    return [f"end_code_{code:04x}" for code in [*END_CODES, 0x1120, 0x7737] if code]


#: f-string families: (file, prefix) -> every name they can make
FAMILIES = {
    ("drivers/fins/driver.py", "end_code_"): fins_end_code_names,
    ("drivers/modbus/requests.py", "exception_"): modbus_exception_names,
    ("drivers/serial_line/driver.py", "frame_"): serial_line_frame_names,
}
#: counter-making functions: (file, function name) -> every name they can make
MAKERS = {
    ("drivers/mc/driver.py", "counter_of"): mc_end_code_names,
}
#: counters fed through ``errors.update(...)``: (file, function) -> every name they can bring
UPDATES = {
    ("firmware_bridge/driver.py", "on_line_errors"): mcu_node_frame_names,
}


def names_of(site: Site, classes: set[str], trees: dict[Path, ast.Module]) -> list[str]:
    key, where = site.key, str(site.path.relative_to(ROOT))
    if isinstance(key, ast.Constant) and isinstance(key.value, str):
        return [key.value]
    if isinstance(key, ast.JoinedStr) and isinstance(key.values[0], ast.Constant):
        family = FAMILIES.get((where, str(key.values[0].value)))
        if family is not None:
            return family()
    if isinstance(key, ast.Attribute) and key.attr == "counter":  # failure.counter, exc.counter
        return [name for made in constructed_counters(trees, classes)
                for name in names_of(made, classes, trees)]
    if isinstance(key, ast.Call) and isinstance(key.func, ast.Name) \
            and key.func.id == "status_counter":
        return opcua_status_names()
    if isinstance(key, ast.Call) and isinstance(key.func, ast.Name) \
            and (where, key.func.id) in MAKERS:
        return MAKERS[(where, key.func.id)]()
    pytest.fail(f"{site}: a counter name this test cannot follow: teach the test, and give "
                "every name it makes words in drivers/error_words.py")


def test_the_scan_finds_each_drivers_counters() -> None:
    """The scan itself works: it sees counters of every driver, and the f-string families."""
    trees = _trees()
    sites = counting_sites(trees)
    files = {str(s.path.relative_to(ROOT)) for s in sites}
    for expected in ("drivers/modbus/driver.py", "drivers/opcua/driver.py",
                     "drivers/serial_line/driver.py", "firmware_bridge/driver.py"):
        assert expected in files
    assert {"RequestFailed", "RequestRefused", "ConversionError"} <= counter_classes(trees)
    literal = {s.key.value for s in sites if isinstance(s.key, ast.Constant)}
    assert {"timeout", "connection_lost", "keepalive_missed", "bytes_discarded",
            "node_reboots"} <= literal


def test_every_counter_a_driver_can_produce_has_words() -> None:
    trees = _trees()
    classes = counter_classes(trees)
    names: dict[str, str] = {}
    for site in counting_sites(trees):
        for name in names_of(site, classes, trees):
            names.setdefault(name, str(site))
    for path, tree in trees.items():  # errors.update(...) only where this test knows it
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            for call in ast.walk(node):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "update"
                        and isinstance(call.func.value, ast.Attribute)
                        and call.func.value.attr == "errors"):
                    where = (str(path.relative_to(ROOT)), node.name)
                    assert where in UPDATES, f"{where}: counters this test cannot follow"
                    for name in UPDATES[where]():
                        names.setdefault(name, f"{where[0]}: {where[1]}")
    assert len(names) > 40
    missing = {name: where for name, where in names.items() if not has_words(name)}
    assert not missing, f"counters without words in drivers/error_words.py: {missing}"


def test_no_words_for_counters_that_no_driver_keeps() -> None:
    """Words for a counter that was renamed or removed would hide a missing one."""
    trees = _trees()
    classes = counter_classes(trees)
    produced = {name for site in counting_sites(trees)
                for name in names_of(site, classes, trees)}
    produced |= {n for make in UPDATES.values() for n in make()}
    assert not set(COUNTER_WORDS) - produced
    frame_reasons = {n.removeprefix("frame_") for n in produced if n.startswith("frame_")}
    assert set(FRAME_REASONS) == frame_reasons


@pytest.mark.parametrize(("name", "count", "words"), [
    ("exception_2", 1, "1 request answered Modbus exception 2 (illegal data address)"),
    ("exception_6", 3, "3 requests answered Modbus exception 6 (server device busy)"),
    ("exception_12", 1, "1 request answered Modbus exception 12 (a code the Modbus "
                        "specification does not define)"),
    ("timeout", 2, "2 requests got no answer in time (timeout)"),
    ("connection_lost", 1, "the connection was lost once"),
    ("frame_crc", 4, "4 frames rejected: CRC error"),
    ("mc_end_code_c056", 2, "2 requests answered MC protocol end code C056H (the device range "
                            "is exceeded (address past the device's last number))"),
    ("mc_end_code_4031", 1, "1 request answered MC protocol end code 4031H (CPU: the device "
                            "number is out of the CPU's range)"),
    ("bad_node_id_unknown", 1, "1 answer came with OPC UA status BadNodeIdUnknown (the node "
                               "id refers to a node that does not exist in the server address "
                               "space)"),
    ("end_code_1103", 2, "2 requests answered FINS end code 11 03 (address range error: the "
                         "address is beyond this CPU's memory)"),
    ("end_code_1120", 1, "1 request answered FINS end code 11 20 (parameter error (sub code not "
                         "defined))"),
    ("no_such_counter", 5, "no_such_counter: 5"),
])
def test_words(name: str, count: int, words: str) -> None:
    assert describe(name, count) == words
    assert has_words(name) == (name != "no_such_counter")


def test_describe_errors_leaves_out_zeros_and_sorts_by_name() -> None:
    assert describe_errors({"timeout": 1, "exception_2": 2, "decode": 0}) == [
        "2 requests answered Modbus exception 2 (illegal data address)",
        "1 request got no answer in time (timeout)",
    ]
