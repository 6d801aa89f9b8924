"""The checks of ``promtool check metrics`` (Prometheus' promlint), for a test to run on
a scrape without the Prometheus binaries.

Each rule is promlint's, with its wording: help text, snake_case names and labels,
``_total`` for counters only, base units (seconds, bytes) and no abbreviated units, no
type in the name, no ``:``, the histogram/summary suffixes and labels reserved, info
metrics with value 1, no series twice.
"""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

_SNAKE = re.compile(r"^[a-z_][a-z0-9_]*$")
#: promlint's units: the base unit, and the others it names
_UNITS = {
    "seconds": ("minutes", "hours", "days", "weeks", "milliseconds", "microseconds",
                "nanoseconds"),
    "bytes": ("kilobytes", "megabytes", "gigabytes", "terabytes", "petabytes", "bits"),
    "celsius": ("fahrenheit", "kelvin"),
    "ratio": ("percent",),
}
_ABBREVIATIONS = {"s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d"}
_RESERVED_SUFFIXES = ("_count", "_sum", "_bucket")


def problems(text: str) -> list[str]:
    """What ``promtool check metrics`` would say of ``text`` (the text exposition)."""
    found: list[str] = []
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.M))
    for family in text_string_to_metric_families(text):
        name, kind = family.name, family.type
        exposed = f"{name}_total" if kind == "counter" else (
            f"{name}_info" if kind == "info" else name)
        say = found.append
        if not helps.get(exposed, "").strip() and not helps.get(name, "").strip():
            say(f"{exposed}: no help text")
        if not _SNAKE.match(name):
            say(f"{exposed}: metric names should be written in 'snake_case' not 'camelCase'")
        if ":" in name:
            say(f"{exposed}: metric names should not contain ':'")
        parts = name.split("_")
        if kind != "counter" and name.endswith("_total"):
            say(f"{exposed}: non-counter metrics should not have \"_total\" suffix")
        for base, others in _UNITS.items():
            for unit in others:
                if unit in parts:
                    say(f"{exposed}: use base unit \"{base}\" instead of \"{unit}\"")
        if _ABBREVIATIONS & set(parts[1:]):
            say(f"{exposed}: metric names should not contain abbreviated units")
        for kind_word in ("counter", "gauge", "histogram", "summary", "untyped"):
            if kind_word in parts:
                say(f"{exposed}: metric name should not include type '{kind_word}'")
        if kind not in ("histogram", "summary", "gaugehistogram") and name.endswith(
                _RESERVED_SUFFIXES):
            say(f"{exposed}: non-histogram and non-summary metrics should not have "
                f"\"{name.rsplit('_', 1)[1]}\" suffix")
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            for label in sample.labels:
                if not _SNAKE.match(label):
                    say(f"{exposed}: label names should be written in 'snake_case' not "
                        f"'camelCase'")
                if kind not in ("histogram", "gaugehistogram") and label == "le":
                    say(f"{exposed}: non-histogram metrics should not have \"le\" label")
                if kind != "summary" and label == "quantile":
                    say(f"{exposed}: non-summary metrics should not have \"quantile\" label")
            if kind == "info" and sample.value != 1:
                say(f"{exposed}: an info metric's value is 1")
            key = (sample.name, labels)
            if key in seen:
                say(f"{sample.name}{dict(labels)}: metric is duplicated")
            seen.add(key)
    return list(dict.fromkeys(found))
