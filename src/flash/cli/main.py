"""The ``flash`` command line."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from flash.cli._output import fail
from flash.cli.build import build
from flash.cli.init import init
from flash.cli.run import run
from flash.cli.serve import serve

# The MissingParameter beside the BadParameter typer exports is the one it raises: typer
# 0.29 raises its own copy of click's exceptions (typer._click), not click's, older ones click's.
_MissingParameter: type[Exception] = sys.modules[typer.BadParameter.__module__].MissingParameter


class FlashCommand(TyperCommand):
    """A command whose bad option values (``--max-size abc``) are one ``Error:`` line and exit
    code 1, as the commands' own checks of values are; a missing argument or an unknown
    option stays a usage error (typer's usage and box, exit code 2)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except typer.BadParameter as exc:
            # MissingParameter is a BadParameter too, but it is a usage mistake, not a value.
            if isinstance(exc, _MissingParameter):
                raise
            fail(exc.format_message())

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_shown_bare(super().get_params(ctx))


class FlashGroup(TyperGroup):
    """The ``flash`` group: its flags (``--help``, ``--version``) shown as the commands' are."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _flags_shown_bare(super().get_params(ctx))


def _flags_shown_bare(params: list[Any]) -> list[Any]:
    # Typer's help shows a flag's type (`--force <bool>`) as if it took a value.
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    return params


app = typer.Typer(
    name="flash",
    cls=FlashGroup,
    help="Build Python projects into serverless endpoints and serve them locally.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for command in (init, build, serve, run):
    app.command(cls=FlashCommand)(command)


def _print_version(value: bool) -> None:
    if value:
        from flash import __version__

        print(f"flash {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print Flash's version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    pass


def main() -> None:
    app()
