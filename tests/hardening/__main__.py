"""``python -m tests.hardening [--quick] [--only AREA ...]``: run the checks, print the table."""

from __future__ import annotations

import importlib
import sys
import time
import traceback

import click

from tests.hardening.report import Row, table

#: In the order they run: the cheap and deterministic first.
AREAS = ("faults", "fuzz", "load", "soak", "kill")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--quick", is_flag=True, help="Shrink every check to seconds: a smoke test.")
@click.option(
    "--only",
    "only",
    multiple=True,
    type=click.Choice(AREAS),
    help="Run only this area (repeatable).",
)
def main(quick: bool, only: tuple[str, ...]) -> None:
    """Inject faults, fuzz the parsers, load, soak and kill; print what held."""
    rows: list[Row] = []
    started = time.perf_counter()
    for area in only or AREAS:
        click.echo(f"{area}...", err=True)
        module = importlib.import_module(f"tests.hardening.{area}")
        try:
            area_rows = module.run(quick)
        except Exception as exc:  # a crash is a finding, not the end of the run
            traceback.print_exc()
            area_rows = [Row(area, f"crashed: {exc!r}"[:80], 1, 0, 0, 1)]
        rows.extend(area_rows)
        for row in area_rows:
            mark = "ok" if row.ok else "FAILED"
            click.echo(f"  {mark}: {row.check} ({row.note})", err=True)
    minutes = (time.perf_counter() - started) / 60
    size = "quick" if quick else "full"
    click.echo(f"securesess hardening, {size} run, {minutes:.1f} min\n")
    click.echo(table(rows))
    sys.exit(0 if all(row.ok for row in rows) else 1)


if __name__ == "__main__":
    main()
