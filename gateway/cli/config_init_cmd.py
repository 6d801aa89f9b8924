"""``chenxing-gateway config init``: write a commented starter config."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from gateway import exit_codes


def starter_text() -> str:
    """The starter config shipped in the package (``gateway/config/starter.yaml``)."""
    return resources.files("gateway.config").joinpath("starter.yaml").read_text(encoding="utf-8")


#: where the Debian package and the systemd unit keep the state (the unit's StateDirectory=)
PACKAGED_STATE_DIR = "/var/lib/chenxing"


def _replace(text: str, old: str, new: str) -> str:
    if old not in text:
        raise ValueError(f"the starter config no longer holds {old!r}")
    return text.replace(old, new)


def packaged_text() -> str:
    """The starter as the Debian package installs it, ``/etc/chenxing/gateway.yaml``: state
    in /var/lib/chenxing, commands without ``-c``, and no device yet (the starter's stay,
    commented out), so it does not validate and the package does not start the service
    before someone configured a device."""
    text = _replace(starter_text(), "(starter, written by `chenxing-gateway config init`)",
                    "(installed by the chenxing-edge Debian package)")
    text = _replace(text, " -c THIS_FILE", "")
    text = _replace(text, "Edit the devices and the broker, then:",
                    "Add a device (e.g. uncomment the one below, and `devices:` without `[]`),"
                    "\n# set the broker, then (without -c, commands read this file):")
    text = _replace(text, "#   chenxing-gateway run\n",
                        "#   systemctl start chenxing-gateway    # enabled: starts at boot too\n")
    lines = text.splitlines(keepends=True)
    start = lines.index("devices:\n")
    end = next(i for i in range(start + 1, len(lines)) if lines[i][:1].isalpha())
    lines[start] = ("devices: []                     # none yet: the service starts once "
                    "`chenxing-gateway validate` passes\n")
    for i in range(start + 1, end):
        if lines[i].strip() and not lines[i].lstrip().startswith("#"):
            lines[i] = "  # " + lines[i][2:]
    text = "".join(lines)
    return _replace(text, "state_dir: var                # sequence numbers and the disk spool "
                          "(e.g. /var/lib/chenxing)",
                    f"state_dir: {PACKAGED_STATE_DIR}  # sequence numbers, the disk spool, the "
                    "audit log")


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
