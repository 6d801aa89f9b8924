"""``chenxing-gateway config init``: write a commented starter config."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from gateway import exit_codes


def starter_text() -> str:
    """The starter config shipped in the package (``gateway/config/starter.yaml``)."""
    return resources.files("gateway.config").joinpath("starter.yaml").read_text(encoding="utf-8")


@click.command("init")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="gateway.yaml",
              show_default=True, help="file to write")
@click.option("--force", is_flag=True, help="overwrite the file when it exists")
def config_init(output: str, force: bool) -> None:
    """Write a commented starter config; refuses to overwrite without --force."""
    path = Path(output)
    if path.exists() and not force:
        click.echo(f"Error: {output} exists; nothing written (add --force to replace it)",
                   err=True)
        raise SystemExit(exit_codes.FILE_EXISTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(starter_text(), encoding="utf-8")
    click.echo(f"wrote {output}; edit it, then: chenxing-gateway validate -c {output}")
