"""The console's pure JavaScript logic, run in Node (installed by scripts/bootstrap.sh):
values formatted exactly as ``chenxing-gateway tail`` formats them (Python's ``.6g``), ISO-like
times, the BigInt reviver, and the add-a-device wizard's bodies for the config API."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from gateway.cli.tail_cmd import _value_text

STATIC = Path(__file__).resolve().parents[2] / "gateway" / "console" / "static"

RUN = """
const vm = require("vm"), fs = require("fs");
const ctx = { window: {}, console, navigator: { languages: ["en"] }, module: undefined };
vm.createContext(ctx);
for (const f of ["format.js", "wizard.js"]) {
  vm.runInContext(fs.readFileSync(process.argv[process.argv.length - 1] + "/" + f, "utf8"), ctx);
}
const F = ctx.window.ChxFormat, W = ctx.window.ChxWizard;
const calls = JSON.parse(fs.readFileSync(0, "utf8"));
const out = calls.map(([fn, args]) => {
  const [ns, name] = fn.split(".");
  const r = (ns === "F" ? F : W)[name](...args);
  return typeof r === "bigint" ? "bigint:" + r.toString() : r;
});
process.stdout.write(JSON.stringify(out, (k, v) => typeof v === "bigint" ? "bigint:" + v : v));
"""


def run_js(calls: list[tuple[str, list[Any]]]) -> list[Any]:
    node = shutil.which("node")
    assert node is not None, "Node.js is missing: run scripts/bootstrap.sh --test as root"
    # JSON.parse source access (the BigInt reviver) is on by default in Chromium 114+; Node 20
    # has it behind this flag
    done = subprocess.run([node, "--harmony-json-parse-with-source", "-e", RUN, str(STATIC)],
                          input=json.dumps(calls), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


VALUES = [0.0, 1.0, 72.0, 72.5, -3.25, 230.1, 0.1 + 0.2, 1 / 3, 2 / 3, 123456.0, 1234567.0,
          999999.4, 999999.5, 1e-4, 1.234567e-5, 0.00012345678, 1e20, -1e20, 6.02214076e23,
          1e-300, 5e-324, 1.7976931348623157e308, 25550.004, 12.5, 100.0, 0.5, 1.5, 2.5,
          -0.0, 99999.95, 9999.995]


def test_values_are_formatted_as_tail_formats_them() -> None:
    got = run_js([("F.value", [v]) for v in VALUES])
    assert got == [_value_text(v) for v in VALUES]


def test_integers_and_64_bit_values_stay_exact() -> None:
    text = '{"v": 18446744073709551615, "gv": 9007199254740993, "value": 72.0, "t": 1, "q": 0}'
    (parsed,) = run_js([("F.parse", [text])])
    assert parsed == {"v": "bigint:18446744073709551615", "gv": "bigint:9007199254740993",
                      "value": 72, "t": 1, "q": 0}
    got = run_js([("F.value", [None]), ("F.value", ["text"]), ("F.value", [True])])
    assert got == ["-", "text", "true"]


def test_times_are_iso_like_and_ages_as_tail_shows_them() -> None:
    time_text, age, long_age, down = run_js([
        ("F.time", [1_764_918_073_000]), ("F.age", [12.34]), ("F.age", [3600]),
        ("F.duration", [42.9])])
    assert len(time_text) == 19 and time_text[4] == "-" and time_text[10] == " ", time_text
    assert (age, long_age, down) == ("12.3 s", "60 min", "42 s")


def test_the_wizard_builds_the_config_api_bodies() -> None:
    schema = {"properties": {"host": {"type": "string"}, "port": {"type": "integer"},
                             "timeout": {"anyOf": [{"type": "number"}, {"type": "string"}]}}}
    device, problems, taken = run_js([
        ("W.deviceFromForm", ["modbus_tcp", " meter-3 ", {"host": "127.0.0.1", "port": "5020",
                                                          "timeout": "0.5", "unit_id": ""},
                              schema]),
        ("W.deviceProblems", [{"name": "meter 3", "protocol": ""}, []]),
        ("W.deviceProblems", [{"name": "m1", "protocol": "modbus_tcp"}, ["m1"]]),
    ])
    assert device == {"name": "meter-3", "protocol": "modbus_tcp", "host": "127.0.0.1",
                      "port": 5020, "timeout": 0.5}
    assert len(problems) == 2 and "letters, digits" in problems[0]
    assert taken == ["a device m1 exists already"]


def test_scan_and_browse_answers_become_named_tags() -> None:
    rows = [{"address": 0, "register": 17, "as": {"uint16": 17, "int16": 17}},
            {"address": 1, "register": 16742, "as": {"float32 CDAB": 230.5}},
            {"address": 2, "exception": 2}]
    nodes = [
        {"node_id": "ns=2;s=Line", "name": "Line", "path": "Line", "node_class": "Object"},
        {"node_id": "ns=2;s=Line.Temp", "name": "Temp", "path": "Line/Température",
         "data_type": "Double", "tag": {"name": "Line/Temp (°C)", "node": "ns=2;s=Line.Temp",
                                        "type": "float64"}},
        {"node_id": "ns=2;s=Line.Temp2", "name": "Temp", "path": "Line/Température",
         "tag": {"node": "ns=2;s=Line.Temp2", "type": "float64"}}]
    scan, browse = run_js([("W.scanCandidates", [rows, "holding"]),
                           ("W.browseCandidates", [nodes])])
    assert [c["tag"] for c in scan] == [
        {"name": "holding_0_uint16", "table": "holding", "address": 0, "type": "uint16"},
        {"name": "holding_0_int16", "table": "holding", "address": 0, "type": "int16"},
        {"name": "holding_1_float32_CDAB", "table": "holding", "address": 1, "type": "float32",
         "byte_order": "CDAB"}]
    assert [c["tag"]["name"] for c in browse] == ["Line/Temp_C", "Line/Temperature"]
    (tags,) = run_js([("W.tagsFromTicked", [browse, {
        "ns=2;s=Line.Temp": {"unit": " degC ", "scale": "0.1", "offset": "0"},
        "ns=2;s=Line.Temp2": {"name": "oven temp!", "scale": "1"}}])])
    assert tags == [
        {"name": "Line/Temp_C", "node": "ns=2;s=Line.Temp", "type": "float64",
         "unit": "degC", "scale": 0.1},
        {"name": "oven_temp", "node": "ns=2;s=Line.Temp2", "type": "float64"}]


def test_names_problems_diff_lines_and_refusals_in_the_validate_wording() -> None:
    unique, bad, lines, words, plain = run_js([
        ("W.uniqueNames", [["t", "t", "u"], ["u"]]),
        ("W.tagProblems", [[{"name": "a b"}, {"name": "x", "scale": 0}, {"name": "x"}]]),
        ("W.diffLines", ["--- a\n+++ b\n@@ -1 +1 @@\n-old\n+new\n same\n"]),
        ("W.problemLines", [{"problems": [{"file": "gateway.yaml", "line": 12,
                                           "key": "devices[2].port", "message": "too big"}]}]),
        ("W.problemLines", [{"error": "version 4 is not running (6 is)"}]),
    ])
    assert unique == ["t", "t_2", "u_2"]
    assert len(bad) == 3
    assert [line["kind"] for line in lines] == ["head", "head", "hunk", "del", "add", "ctx"]
    assert words == ["gateway.yaml:12: devices[2].port: too big"]
    assert plain == ["version 4 is not running (6 is)"]
