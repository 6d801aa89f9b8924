"""Scenario timeline (steps, ramps, drifts, noise, machine states), the new expectation
kinds and their validation, without a gateway: the process models are the real ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner

from gateway.errors import ConfigError
from hil.cli import main
from hil.process.energy_meter import EnergyMeterModel, MachineState, MeterParams
from hil.process.injection_moulding import InjectionMouldingModel
from hil.recorder import ReceivedSample
from hil.scenario import Recording, load_scenario
from hil.scenario.cli import with_duration
from hil.scenario.commands import CommandRecord
from hil.scenario.expectations import evaluate
from hil.scenario.model import CommandRoundTrip, ModelAlarm, ResourceGrowth
from hil.scenario.resources import ResourceSample, read_usage
from hil.scenario.runner import scheduled
from hil.scenario.timeline import (
    Drift,
    MachineStateChange,
    Noise,
    Ramp,
    StepChange,
    TimelinePlayer,
)

M = TypeVar("M")

BASE = """\
name: t
duration: 20
devices:
  - {kind: modbus_meter, name: meter}
  - {kind: opcua_plc, name: press}
  - {kind: mcu_node, name: node}
expect:
  - {type: no_sequence_gaps}
"""


def _player(models: dict[str, object], end: float = 10.0) -> TimelinePlayer:
    loop = asyncio.get_running_loop()
    start = loop.time()
    return TimelinePlayer(models, lambda: loop.time() - start, end, seed=4)


def recorded(model_cls: type[M], log: list[Any]) -> type[M]:
    """``model_cls`` keeping every parameter set it is given in ``log``, in order."""

    class Recorded(model_cls):  # type: ignore[valid-type, misc]
        @property
        def params(self) -> Any:
            return self._params

        @params.setter
        def params(self, value: Any) -> None:
            self._params = value
            log.append(value)

    return Recorded


def counting_clock(log: list[Any], step: float) -> Callable[[], float]:
    """Scenario time that passes ``step`` s with each parameter set applied: the timeline
    makes the same steps however slowly the loop turns."""
    return lambda: len(log) * step


async def test_step_ramp_and_drift_move_the_model_parameter() -> None:
    log: list[Any] = []
    plc = recorded(InjectionMouldingModel, log)(seed=1)
    meter = recorded(EnergyMeterModel, log)(seed=1)
    del log[:]  # the models' own initial parameters
    player = TimelinePlayer({"press": plc, "meter": meter}, counting_clock(log, 1 / 8), 1.0)
    ramp = Ramp(kind="ramp", at=0, device="press", param="melt_setpoint_c", to=200, over=0.5)
    await player.play(ramp)
    # at t = 0, 1/8, 2/8, 3/8 s of its 0.5 s, then its end: in between, not a jump
    assert [p.melt_setpoint_c for p in log] == [230.0, 222.5, 215.0, 207.5, 200.0]
    assert plc.params.melt_setpoint_c == 200.0
    drift = Drift(kind="drift", at=0, device="meter", param="idle_power_kw", per_minute=60)
    await player.play(drift)  # +1 kW/s from t = 0, applied at 5/8, 6/8, 7/8 s, until the end
    assert [p.idle_power_kw for p in log[5:]] == [3.625, 3.75, 3.875]
    await player.play(StepChange(kind="step", at=0, device="meter", param="idle_power_kw",
                                 value=9.0))  # fmt: skip
    assert meter.params.idle_power_kw == 9.0


async def noise_draws(seed: int, index: int, draws: int = 30) -> tuple[list[float], float]:
    """The voltages a noise entry sets, one per draw, and the one it leaves."""
    log: list[MeterParams] = []
    meter = recorded(EnergyMeterModel, log)(seed=1)
    del log[:]  # the model's own initial parameters
    player = TimelinePlayer({"meter": meter}, counting_clock(log, 1 / 100), draws / 100,
                            seed=seed)  # fmt: skip
    noise = Noise(kind="noise", at=0, device="meter", param="nominal_voltage_v", sd=5,
                  every=0.001)  # fmt: skip
    await player.play(noise, index=index)
    voltages = [p.nominal_voltage_v for p in log]
    return voltages[:-1], voltages[-1]


async def test_noise_is_seeded_around_the_base_and_ends_on_it() -> None:
    first, left = await noise_draws(seed=4, index=2)
    assert len(first) == 30 and left == 230.0  # back on the base
    assert len(set(first)) == 30 and max(abs(v - 230) for v in first) > 1  # noise around it
    assert abs(sum(first) / 30 - 230) < 5  # centred on the base (sd 5)
    again, _ = await noise_draws(seed=4, index=2)
    assert again == first  # same seed, same draws, every one of them
    other_seed, _ = await noise_draws(seed=5, index=2)
    other_entry, _ = await noise_draws(seed=4, index=3)
    # another seed or another entry: other draws, none shared
    assert not set(other_seed) & set(first) and not set(other_entry) & set(first)


async def test_machine_states_hold_the_meter_and_stop_the_press() -> None:
    t0 = time.time()
    meter = EnergyMeterModel(seed=2, t0=t0, time_scale=100)
    plc = InjectionMouldingModel(seed=2, t0=t0, time_scale=20)
    player = _player({"meter": meter, "press": plc})
    await player.play(MachineStateChange(kind="machine_state", at=0, device="meter",
                                         state="stopped"))  # fmt: skip
    readings = [meter.state_at(t0 + 5 + i) for i in range(30)]  # 3000 model seconds
    assert {r.machine_state for r in readings[1:]} == {MachineState.OFF}
    assert readings[-1].active_power_kw < 0.1
    player.set_machine_state("meter", "auto")
    states = {meter.state_at(t0 + 40 + i).machine_state for i in range(60)}
    assert len(states) > 1  # its own random dwell times again
    parts = plc.state_at(t0 + 3).part_count
    player.set_machine_state("press", "idle")
    idle = plc.state_at(t0 + 6)
    assert idle.state == "IDLE" and idle.injection_pressure_bar == 0.0
    assert plc.state_at(t0 + 9).part_count == idle.part_count <= parts + 1
    player.set_machine_state("press", "production")
    assert plc.state_at(t0 + 14).part_count > idle.part_count


def test_timeline_and_new_keys_errors_name_file_line_and_key(tmp_path: Path) -> None:
    text = BASE + (
        "timeline:\n"
        "  - {at: 1, kind: ramp, device: press, param: melt_temp, to: 200, over: 5}\n"
        "  - {at: 1, kind: drift, device: pump, param: x, per_minute: 1}\n"
        "  - {at: 1, kind: step, device: node, param: x, value: 1}\n"
        "  - {at: 1, kind: machine_state, device: meter, state: sleeping}\n"
        "  - {at: 30, kind: noise, device: meter, param: idle_power_kw, sd: 1}\n"
        "faults:\n"
        "  - {at: 1, action: serial_garbage, device: meter}\n"
        "  - {at: 2, action: command, name: c1, tag: pump.limit, value: 3}\n"
    )
    text = text.replace("  - {type: no_sequence_gaps}\n",
                        "  - {type: no_sequence_gaps}\n"
                        "  - {type: command_round_trip, command: c2}\n")  # fmt: skip
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    found = {(p.line, p.path_text): p.message for p in info.value.problems}
    assert "opcua_plc has no parameter 'melt_temp'" in found[(11, "timeline[0].param")]
    assert "melt_setpoint_c" in found[(11, "timeline[0].param")]
    assert found[(12, "timeline[1].device")] == "no device named 'pump' in this scenario"
    assert found[(13, "timeline[2].device")] == "'node' has no process model to change"
    assert (14, "timeline[3].state") in found
    assert found[(15, "timeline[4].at")] == "after the scenario ends"
    assert found[(17, "faults[0].device")] == "'meter' is not a mcu_node, scale or dlt645_meter"
    assert found[(18, "faults[1].tag")] == "no device named 'pump' in this scenario"
    assert found[(9, "expect[1].command")] == "no command action named 'c2'"
    assert all(p.file == str(path) for p in info.value.problems)


def test_repeat_and_duration_override_schedule_what_fits(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(BASE.replace("duration: 20", "duration: 20\nrepeat_every: 10") + (
        "faults:\n  - {at: 4, action: broker_outage}\n"
        "timeline:\n  - {at: 8, kind: machine_state, device: press, state: idle}\n"))  # fmt: skip
    scenario = load_scenario(path)
    faults, entries = scheduled(scenario)
    assert [f.at for f in faults] == [4, 14] and [e.at for e in entries] == [8, 18]
    faults, entries = scheduled(with_duration(scenario, 35))
    assert [f.at for f in faults] == [4, 14, 24, 34] and [e.at for e in entries] == [8, 18, 28]
    faults, _ = scheduled(with_duration(scenario.model_copy(update={"repeat_every": None}), 3))
    assert faults == []
    result = CliRunner().invoke(main, ["run", str(path), "--duration", "ten minutes"])
    assert result.exit_code == 2 and "--duration" in result.output
    assert "invalid duration" in result.output


def _sample(tag: str, value: float, t: float, quality: str = "good") -> ReceivedSample:
    return ReceivedSample(tag, value, int(t * 1000), quality, 0, int((t + 0.05) * 1e9))


def _rec(commands: list[CommandRecord], samples: list[ReceivedSample] = ()) -> Recording:  # type: ignore[assignment]
    return Recording(0.0, [], [], [], list(samples), [], commands)


def _rt(**kw: object) -> CommandRoundTrip:
    return CommandRoundTrip(type="command_round_trip", command="c", **kw)  # type: ignore[arg-type]


def test_command_round_trip_says_why_it_failed() -> None:
    def sent(result: dict[str, object] | None, answered: float | None, device: float | None
             ) -> CommandRecord:  # fmt: skip
        return CommandRecord("c", "c-1", "meter.power_limit", 40.0, 1.0, result, answered, device)

    ok = {"status": "accepted", "results": [{"tag": "meter.power_limit", "status": "accepted"}]}
    bad = {"status": "rejected", "reason": "a write was rejected; nothing written",
           "results": [{"tag": "meter.voltage", "status": "rejected",
                        "reason": "meter.voltage is not writable"}]}  # fmt: skip
    assert evaluate(_rt(), _rec([])).detail == "command c was never sent"
    assert "no cmd-result for c-1" in evaluate(_rt(), _rec([sent(None, None, None)])).detail
    res = evaluate(_rt(), _rec([sent(bad, 1.1, None)]))
    assert not res.passed and "cmd-result rejected" in res.detail
    assert "meter.voltage is not writable" in res.detail
    assert evaluate(_rt(status="rejected"), _rec([sent(bad, 1.1, None)])).passed
    slow = evaluate(_rt(within=1), _rec([sent(ok, 3.5, 40.0)]))
    assert not slow.passed and "after 2.50 s > 1 s" in slow.detail
    samples = [_sample("meter.power_limit", 50.0, 0.5), _sample("meter.power_limit", 50.0, 1.5)]
    unseen = evaluate(_rt(telemetry=True), _rec([sent(ok, 1.2, 40.0)], samples))
    assert not unseen.passed and "never seen in telemetry; last value 50.0" in unseen.detail
    samples.append(_sample("meter.power_limit", 40.0, 1.4))
    seen = evaluate(_rt(telemetry=True, on_device=True), _rec([sent(ok, 1.2, 40.0)], samples))
    assert seen.passed and "in telemetry at t=1.40 s" in seen.detail
    wrong = evaluate(_rt(on_device=True), _rec([sent(ok, 1.2, 50.0)]))
    assert not wrong.passed and "the device holds 50.0" in wrong.detail


def test_model_alarm_not_raised_and_resource_growth() -> None:
    rec = Recording(0.0, [], [], [], [_sample("models.e/alarm", 1.0, 12.0)])
    quiet = ModelAlarm(type="model_alarm", tag="models.e/alarm", raised=False, between=(0, 10))
    assert evaluate(quiet, rec).passed
    late = quiet.model_copy(update={"between": (0, 20)})
    assert evaluate(late, rec).detail == "raised at t=12.00 s"
    leak = [ResourceSample(t, 1, 99, 50_000 + int(t) * 100, 20 + int(t) // 10)
            for t in range(0, 200, 2)]  # fmt: skip
    exp = ResourceGrowth(type="resource_growth", max_rss_mb=5, max_fds=3, warmup=10)
    res = evaluate(exp, Recording(0.0, [], [], [], [], leak))
    assert not res.passed and "run 1: RSS 52.0 MB +14.1 MB, fds 23 +14" in res.detail
    flat = [ResourceSample(s.t, 1, 99, 50_000, 20) for s in leak]
    assert evaluate(exp, Recording(0.0, [], [], [], [], flat)).passed
    assert "too few" in evaluate(exp, Recording(0.0, [], [], [], [], flat[:3])).detail
    usage = read_usage(__import__("os").getpid())
    assert usage is not None and usage[0] > 1000 and usage[1] > 2
