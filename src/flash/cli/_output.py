"""Console helpers shared by the commands: one place decides how errors look."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


@contextmanager
def user_errors(verbose: bool, *kinds: type[BaseException]) -> Iterator[None]:
    """Turn the listed errors into a one-paragraph message and exit code 1."""
    try:
        yield
    except kinds as exc:
        if verbose:
            err_console.print_exception()
        fail(str(exc))


def fail(message: str) -> NoReturn:
    """Print a one-paragraph error and exit with code 1."""
    err_console.print(f"[bold red]Error:[/] {message}", soft_wrap=True)
    raise typer.Exit(1)


def check_port(option: str, port: int) -> None:
    # Checked before any state is made (the platform would refuse --port only once it has
    # locked its state folder), and --app-port goes to another process.
    if not 0 <= port <= 65535:
        fail(f"{option} must be a port number from 0 to 65535, got {port}")


def stage_printer(enabled: bool) -> Callable[[str, str], None]:
    def report(stage: str, detail: str) -> None:
        if enabled:
            console.print(f"[green]✓[/] [bold]{stage:<13}[/] {detail}")

    return report


def is_tty() -> bool:
    return sys.stdout.isatty()
