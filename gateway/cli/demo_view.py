"""Parts of the demo's live view besides the tag table: the last messages as the
subscriber decoded them (Sparkplug B with its aliases resolved, or JSON), the model
alarms, and which edge models have reported."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text

from hil.recorder import ReceivedSample

#: decoded messages shown under the table
LAST_MESSAGES = 3
#: values shown per message
VALUES_PER_MESSAGE = 4


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "null" if value is None else str(value)


def messages_text(messages: Sequence[dict[str, Any]]) -> str:
    """``DDATA imm1 seq 42: MeltTemp=231.2 MouldTemp=48.1 … (+3)``, newest last."""
    lines = ["last messages, decoded:"]
    for body in messages[-LAST_MESSAGES:]:
        samples = body.get("samples") or {}
        tags, values = samples.get("tag") or [], samples.get("value") or []
        kind = body.get("type", "data")
        device = body.get("device") or ""
        shown = " ".join(f"{str(tag).split('.', 1)[-1]}={_value(value)}"
                         for tag, value in list(zip(tags, values, strict=False))
                         [:VALUES_PER_MESSAGE])  # fmt: skip
        more = f" (+{len(tags) - VALUES_PER_MESSAGE})" if len(tags) > VALUES_PER_MESSAGE else ""
        where = f" {device}" if device else ""
        lines.append(f"  {kind}{where} seq {body.get('seq')}: {shown}{more}")
    if len(lines) == 1:
        lines.append("  (none yet)")
    return "\n".join(lines)


def _alarm_tags(latest: Mapping[str, ReceivedSample], models_device: str
                ) -> dict[str, ReceivedSample]:  # fmt: skip
    """The model alarm tags (bools under the models device)."""
    prefix = f"{models_device}."
    return {tag: s for tag, s in latest.items()
            if tag.startswith(prefix) and isinstance(s.value, bool)}


def alarms_text(latest: Mapping[str, ReceivedSample], models_device: str) -> Text:
    """``alarms: energy/energy_anomaly RAISED`` in red, or that none is raised."""
    alarms = _alarm_tags(latest, models_device)
    raised = sorted(tag.removeprefix(f"{models_device}.") for tag, s in alarms.items()
                    if s.value is True and s.quality == "good")
    if raised:
        return Text(f"alarms: {', '.join(raised)} RAISED", style="bold red")
    return Text(f"alarms: none raised ({len(alarms)} watched)", style="green")


def alarms_raised(samples: Sequence[ReceivedSample], models_device: str) -> list[str]:
    """The model alarms that were raised at some point (``energy/energy_anomaly``)."""
    prefix = f"{models_device}."
    return sorted({s.tag.removeprefix(prefix) for s in samples
                   if s.tag.startswith(prefix) and s.value is True and s.quality == "good"})


def models_reported(latest: Mapping[str, ReceivedSample], models_device: str) -> list[str]:
    """The edge models with an output of usable quality (good or uncertain)."""
    prefix = f"{models_device}."
    names = {tag.removeprefix(prefix).split("/", 1)[0] for tag, s in latest.items()
             if tag.startswith(prefix) and "/" in tag and s.quality in ("good", "uncertain")}
    return sorted(names)
