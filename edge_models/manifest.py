"""The model manifest: a YAML file beside each ``.onnx`` saying what the model needs and makes.

Validated like the gateway config: unknown keys, duplicate keys and bad values are
errors naming the file, line and key path (see ``edge_models/README.md``).
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from gateway.config.types import Duration, Name, PositiveDuration, StrictModel, parse_duration
from gateway.config.yaml_model import line_of, validate_yaml_text
from gateway.config.yaml_reader import KeyPath
from gateway.errors import ConfigError, ConfigProblem

#: a tag as ``device.tag`` (a model output is ``{models device}.{model}/{output}``)
TagPath = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*\.[A-Za-z0-9][\w\-/]*$")]


class Aggregation(enum.StrEnum):
    """How the samples of one tag in a window become one feature."""

    LAST = "last"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    STD = "std"
    RMS = "rms"
    SLOPE = "slope"
    INTEGRAL = "integral"
    COUNT = "count"


def _parse_window(value: Any) -> Any:
    return value if value == "cycle" else parse_duration(value)


#: seconds (``"30s"``) or ``"cycle"``: the last complete machine cycle
Window = Annotated[
    float | Literal["cycle"],
    BeforeValidator(_parse_window),
]


class InputSpec(StrictModel):
    """One model input column: a tag aggregated over a window, then scaled."""

    tag: TagPath = Field(description="the tag, as device.tag")
    aggregation: Aggregation = Field(description="last, mean, min, max, std, rms, slope, "
                                     "integral, count")
    window: Window = Field(description="a duration such as '30s', or 'cycle'")
    scale: float = Field(default=1.0, description="feature = aggregate * scale + offset")
    offset: float = 0.0
    fill: float = Field(
        default=0.0, description="value fed to the model when the input is missing or bad "
        "and on_bad_input is 'uncertain'"
    )

    @model_validator(mode="after")
    def _positive_window(self) -> InputSpec:
        if self.window != "cycle" and float(self.window) <= 0:
            raise ValueError("window must be a positive duration or 'cycle'")
        return self


class CycleSpec(StrictModel):
    """A machine cycle ends at an edge of a tag, e.g. a part counter's increment."""

    tag: TagPath
    edge: Literal["increment", "rising", "falling"] = Field(
        default="increment", description="increment: the value rose; rising: 0 -> non-zero; "
        "falling: non-zero -> 0"
    )


class TriggerSpec(StrictModel):
    """When the model runs: at the end of every cycle, or every N seconds."""

    on: Literal["cycle", "interval"]
    every: PositiveDuration | None = Field(default=None, description="with on: interval")
    settle: Duration = Field(
        default=0.2,
        description="wait this long after the trigger time for late samples of other "
        "devices before computing the windows",
    )

    @model_validator(mode="after")
    def _every(self) -> TriggerSpec:
        if self.on == "interval" and self.every is None:
            raise ValueError("an interval trigger needs 'every', e.g. every: 5s")
        if self.on == "cycle" and self.every is not None:
            raise ValueError("'every' is for on: interval only")
        return self


class OutputSpec(StrictModel):
    """One published output: a column of an ONNX output."""

    name: Name = Field(description="tag name under the model: {models device}.{model}/{name}")
    onnx: str = Field(description="name of the ONNX output holding it")
    index: int = Field(default=0, ge=0, description="column in that output ([batch, k])")
    unit: str = ""
    description: str = ""


class AlarmSpec(StrictModel):
    """An alarm on an output: set above (or below) a threshold for at least min_duration."""

    name: Name
    output: Name = Field(description="name of one of the outputs")
    above: float | None = None
    below: float | None = None
    hysteresis: float = Field(default=0.0, ge=0, description="the alarm clears this far back")
    min_duration: Duration = Field(default=0.0, description="the condition holds this long first")
    description: str = ""

    @model_validator(mode="after")
    def _one_threshold(self) -> AlarmSpec:
        if (self.above is None) == (self.below is None):
            raise ValueError("an alarm has exactly one of 'above' or 'below'")
        return self


class Manifest(StrictModel):
    """Everything the runtime needs to know about one ``.onnx`` file."""

    name: Name
    version: str = Field(min_length=1, max_length=64)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="of the .onnx file")
    file: str | None = Field(default=None, description="the .onnx file beside the manifest; "
                             "default {manifest name}.onnx")
    description: str = ""
    shadow: bool = Field(
        default=False, description="a candidate: runs beside the active model of the same "
        "name and publishes under {model}/shadow/{output} only"
    )
    input: str = Field(default="features", description="name of the ONNX input [batch, inputs]")
    inputs: list[InputSpec] = Field(min_length=1)
    cycle: CycleSpec | None = None
    trigger: TriggerSpec
    outputs: list[OutputSpec] = Field(min_length=1)
    alarms: list[AlarmSpec] = Field(default_factory=list)
    on_bad_input: Literal["skip", "uncertain"] = Field(
        default="skip", description="skip: no output; uncertain: run with the inputs' fill "
        "values and publish the outputs as uncertain"
    )

    @model_validator(mode="after")
    def _cross(self) -> Manifest:
        uses_cycle = self.trigger.on == "cycle" or any(i.window == "cycle" for i in self.inputs)
        if uses_cycle and self.cycle is None:
            raise ValueError("a cycle trigger or window needs 'cycle: {tag: ..., edge: ...}'")
        return self

    @property
    def input_tags(self) -> list[str]:
        return [i.tag for i in self.inputs]


def _semantic(data: Any, file: str, lines: dict[KeyPath, int]) -> list[ConfigProblem]:
    """Unique output and alarm names; alarms name an output."""
    problems: list[ConfigProblem] = []
    if not isinstance(data, dict):
        return problems
    names: dict[str, int] = {}
    for key in ("outputs", "alarms"):
        items = data.get(key)
        for i, item in enumerate(items if isinstance(items, list) else []):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                continue
            path = (key, i, "name")
            if name in names:
                problems.append(ConfigProblem(file, line_of(lines, path), path,
                                              f"duplicate name {name!r} (first on line "
                                              f"{names[name]})"))
            else:
                names[name] = line_of(lines, path)
    outputs = {o.get("name") for o in data.get("outputs") or [] if isinstance(o, dict)}
    alarms = data.get("alarms")
    for i, alarm in enumerate(alarms if isinstance(alarms, list) else []):
        target = alarm.get("output") if isinstance(alarm, dict) else None
        if isinstance(target, str) and target not in outputs:
            path = ("alarms", i, "output")
            problems.append(ConfigProblem(file, line_of(lines, path), path,
                                          f"no output named {target!r}"))
    return problems


def parse_manifest(text: str, file: str = "<manifest>") -> Manifest:
    """Validate manifest text; raise :class:`ConfigError` listing every problem found."""
    return validate_yaml_text(Manifest, text, file, _semantic)


def load_manifest(path: Path) -> Manifest:
    """Read and validate a manifest file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(str(path), 0, (), f"cannot read: {exc}")]) from exc
    return parse_manifest(text, str(path))


def model_file(manifest: Manifest, manifest_path: Path) -> Path:
    """The ``.onnx`` file a manifest describes (beside it)."""
    name = manifest.file or re.sub(r"\.ya?ml$", "", manifest_path.name) + ".onnx"
    return manifest_path.parent / name
