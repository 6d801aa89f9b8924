"""``chenxing-hil list | validate | run``: the scenario commands (registered in hil/cli.py)."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

import click

from gateway.config.types import parse_duration
from gateway.errors import ConfigError
from hil.scenario.model import Scenario, load_scenario, scenario_files
from hil.scenario.report import write_html, write_junit
from hil.scenario.runner import ScenarioResult, run_scenario

__all__ = ["list_scenarios", "run", "validate", "with_duration"]


def with_duration(scenario: Scenario, seconds: float) -> Scenario:
    """``scenario`` running ``seconds`` long (the runner leaves out what starts later)."""
    return scenario.model_copy(update={"duration": seconds})


def _resolve(name: str) -> Path:
    """A path, or the name of a shipped scenario."""
    path = Path(name)
    if path.exists():
        return path
    for candidate in scenario_files():
        if candidate.stem == name or candidate.stem.replace("_", "-") == name:
            return candidate
    raise click.BadParameter(f"no scenario file or shipped scenario named {name!r}")


@click.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also the on-demand (non-CI) scenarios.")
def list_scenarios(show_all: bool) -> None:
    """List the shipped scenarios (hil/scenarios/*.yaml)."""
    for path in scenario_files():
        try:
            sc = load_scenario(path)
        except ConfigError as exc:
            click.echo(f"{path.stem:28} INVALID ({len(exc.problems)} problems)")
            continue
        if not sc.ci and not show_all:
            continue
        tag = "ci" if sc.ci else "on demand"
        click.echo(f"{sc.name:28} {sc.duration:6.0f} s  {tag:9}  {sc.description.strip()[:70]}")


@click.command()
@click.argument("scenarios", nargs=-1, required=True)
def validate(scenarios: tuple[str, ...]) -> None:
    """Check scenario files; errors name file, line and key."""
    failed = False
    for name in scenarios:
        path = _resolve(name)
        try:
            load_scenario(path)
        except ConfigError as exc:
            failed = True
            for problem in exc.problems:
                click.echo(str(problem), err=True)
        else:
            click.echo(f"{path}: ok")
    if failed:
        raise SystemExit(1)


@click.command()
@click.argument("scenarios", nargs=-1, required=True)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write report.html and junit.xml (and work files) here.",
)
@click.option(
    "--duration",
    default=None,
    metavar="DURATION",
    help="Override the scenarios' duration (e.g. 90s, 10m, 2h); faults and timeline entries "
    "after it are left out (repeated ones keep repeating).",
)
def run(scenarios: tuple[str, ...], report_dir: Path | None, duration: str | None) -> None:
    """Run scenarios against the real gateway process; exit 0 only if every expectation holds."""
    override: float | None = None
    if duration is not None:
        try:
            override = float(parse_duration(duration))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--duration") from exc
        if override <= 0:
            raise click.BadParameter("must be > 0", param_hint="--duration")
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    loaded = []
    for name in scenarios:
        path = _resolve(name)
        try:
            sc = load_scenario(path)
            loaded.append((path, sc if override is None else with_duration(sc, override)))
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
    out = report_dir or Path(tempfile.mkdtemp(prefix="chenxing-hil-report-"))
    out.mkdir(parents=True, exist_ok=True)
    chosen = click.get_current_context().find_root().params.get("log_level") or "info"
    log_file = log_to_file(out / "hil.log", getattr(logging, str(chosen).upper()))
    results: list[ScenarioResult] = []
    width = max(len(sc.name) for _, sc in loaded)
    for path, sc in loaded:
        logging.getLogger("hil.cli").info("scenario %s (%g s, time scale %g) from %s",
                                          sc.name, sc.duration, sc.time_scale, path)
        # one line per scenario: a status that updates in place on a terminal, then the
        # verdict; every progress message and log record goes to hil.log
        with console.status(f"{sc.name}: starting", spinner="dots") as status:

            def progress(msg: str, _name: str = sc.name) -> None:
                logging.getLogger("hil.progress").info("%s: %s", _name, msg)
                status.update(f"{_name}: {msg}")

            res = asyncio.run(run_scenario(sc, str(path), out / sc.name, progress))
        results.append(res)
        console.print(verdict_line(res, width))
        if res.error:
            console.print(f"  [red]run error:[/] {res.error.splitlines()[0]}")
        for r in res.results:
            mark = "[green]PASS[/]" if r.passed else "[red]FAIL[/]"
            console.print(f"  {mark} {r.name}: {r.detail}")
    junit = write_junit(results, out / "junit.xml")
    html = write_html(results, out / "report.html")
    passed = sum(r.passed for r in results)
    console.print(f"{passed}/{len(results)} scenarios passed; report {html}, junit {junit}, "
                  f"log {log_file}")
    raise SystemExit(0 if passed == len(results) else 1)


def verdict_line(res: ScenarioResult, width: int) -> str:
    """``normal-shift   PASS  5/5 expectations  61.2 s`` (rich markup)."""
    verdict = "[green]PASS[/]" if res.passed else "[red]FAIL[/]"
    held = sum(r.passed for r in res.results)
    return (f"{res.scenario.name:<{width}}  {verdict}  {held}/{len(res.results)} expectations"
            f"  {res.wall_s:.1f} s")


def log_to_file(path: Path, level: int = logging.INFO) -> Path:
    """Send every log record to ``path`` instead of the console, where the verdicts are
    (asyncua's thousands of INFO lines per PLC restart only at --log-level debug)."""
    root = logging.getLogger()
    if level > logging.DEBUG:
        logging.getLogger("asyncua").setLevel(logging.WARNING)
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler):
            root.removeHandler(handler)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    root.addHandler(handler)
    root.setLevel(level)
    return path
