"""``chenxing-gateway scan test_counter``: the throwaway driver's tool."""

from __future__ import annotations

import click


@click.command("scan")
@click.option("--start", type=int, required=True)
def scan(start: int) -> None:
    """Print the first counts."""
    click.echo(" ".join(str(start + k) for k in range(3)))
