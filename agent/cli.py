"""The ``pipewarden`` command: parse, load config, validate, construct, run.

Exit codes: 0 ok, 1 the work failed (a run failed, a blocking check failed),
2 usage or configuration error.
"""

from __future__ import annotations

import sys

import click

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pipewarden")
def cli() -> None:
    """pipewarden: observability and data quality for data pipelines."""


@cli.command()
@click.option("--rows", default=50_000, show_default=True, help="Rows of generated orders data.")
@click.option("--home", type=click.Path(file_okay=False), default=None,
              help="State directory (default $PIPEWARDEN_HOME or ./.pipewarden).")
def demo(rows: int, home: str | None) -> None:
    """Run the bundled example ETL (extract -> transform -> load) with checks, and summarise."""
    from agent.demo import run_demo

    sys.exit(run_demo(rows=rows, home=home))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="pipewarden")
