"""The ``flash`` command line."""

from __future__ import annotations

import typer

from flash.cli.build import build
from flash.cli.init import init
from flash.cli.run import run
from flash.cli.serve import serve

app = typer.Typer(
    name="flash",
    help="Build Python projects into serverless endpoints and serve them locally.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(init)
app.command()(build)
app.command()(serve)
app.command()(run)


def main() -> None:
    app()
