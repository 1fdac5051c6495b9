"""The ``flash`` command line."""

from __future__ import annotations

import typer

from flash.cli.build import build
from flash.cli.init import init

app = typer.Typer(
    name="flash",
    help="Build Python projects into serverless endpoints and serve them locally.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(init)
app.command()(build)


def main() -> None:
    app()
