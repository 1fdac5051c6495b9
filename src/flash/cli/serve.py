"""``flash serve ARCHIVE``: run a built archive on this machine behind RunPod's serverless API."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from flash.cli._output import (
    check_api_key,
    check_can_listen,
    check_max_workers,
    check_port,
    check_state_folder,
    console,
    stop_on_signals,
    user_errors,
    wait_for_stop,
)

if TYPE_CHECKING:
    from flash.platform.local import LocalPlatform

DEFAULT_STATE_DIR = Path(".flash")


def serve(
    archive: Annotated[Path, typer.Argument(help="Archive written by `flash build`.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8000,
    max_workers: Annotated[
        int | None,
        typer.Option(
            help="Most worker processes at once, all endpoints together (default: one per core;"
            " an endpoint whose jobs wait with no worker gets one even at this cap)."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="FLASH_API_KEY", help="Require 'Authorization: Bearer <key>'."),
    ] = None,
    state_dir: Annotated[
        Path, typer.Option(help="Where the job database and extracted archives live.")
    ] = DEFAULT_STATE_DIR,
) -> None:
    """Serve every endpoint of a built archive with real worker processes."""
    from flash.platform.archive import check_archive
    from flash.platform.manifest import PlatformError
    from flash.runtime.signing import SigningKeyError, load_signing_key

    check_port("--port", port)
    check_max_workers(max_workers)
    check_api_key(api_key)
    check_state_folder(state_dir)
    # SigningKeyError: a FLASH_SIGNING_KEY that is not a key.
    with user_errors(False, PlatformError, OSError, SigningKeyError):
        # What cannot be served fails before a key, a state folder or a copy is written.
        load_signing_key()  # a $FLASH_SIGNING_KEY that is no key
        check_archive(archive)
        check_can_listen("--port", host, port, "the platform")
        serve_command(archive, host, port, max_workers, api_key, state_dir=state_dir)


def serve_command(
    archive: Path,
    host: str,
    port: int,
    max_workers: int | None,
    api_key: str | None,
    *,
    state_dir: Path = DEFAULT_STATE_DIR,
) -> None:
    """Extract ``archive``, serve it until SIGINT/SIGTERM, then stop every worker."""
    from flash.platform.local import LocalPlatform
    from flash.platform.project import serve_archive
    from flash.sdk.keys import KEY_ENV_VAR, key_to_text

    key, source = app_signing_key(archive, state_dir)
    platform = LocalPlatform(
        state_dir,
        host=host,
        port=port,
        max_workers=max_workers,
        api_key=api_key,
        worker_env={KEY_ENV_VAR: key_to_text(key)},
        # A key file is followed: a new key written there (the file deleted, and a build
        # made another) is the one new workers get, as callers reading the file sign with it.
        signing_key_file=None if source == KEY_ENV_VAR else Path(source),
    )
    with stop_on_signals() as stop:
        try:
            serve_archive(platform, archive)
            print_endpoints(platform, console)
            console.print(f"Pickled calls are signed with the key of {escape(source)}")
            wait_for_stop(stop)
        finally:
            platform.stop()


def app_signing_key(archive: Path, state_dir: Path) -> tuple[bytes, str]:
    """The key the app's callers sign with, and where it comes from (never the key itself):
    ``$FLASH_SIGNING_KEY``; else, for an archive built into a project's ``.flash/``, that
    project's key, so that a second server (its own ``--state-dir``) takes the project's
    calls; else the state folder's own, created if need be."""
    from flash.platform.manifest import PlatformError
    from flash.runtime.signing import load_signing_key
    from flash.sdk.keys import KEY_ENV_VAR, ensure_signing_key, key_file

    from_env = load_signing_key()
    if from_env is not None:
        return from_env, KEY_ENV_VAR
    beside = key_file(archive.resolve().parent)
    if beside.is_file():
        return ensure_signing_key(beside.parent.parent), str(beside)
    if not archive.is_file():  # no key is made for what cannot be served
        raise PlatformError(f"{archive}: archive not found")
    return ensure_signing_key(state_dir), str(key_file(state_dir))


def print_endpoints(platform: LocalPlatform, console: Console) -> None:
    # Endpoint names, function names and the host are the user's text, not markup.
    table = Table(title=f"Flash platform on {escape(platform.url)}")
    table.add_column("endpoint")
    table.add_column("url")
    table.add_column("functions")
    for endpoint in platform.endpoints():
        functions = "\n".join(endpoint["functions"])
        table.add_row(*map(escape, (endpoint["name"], endpoint["url"], functions)))
    print_whole(console, table)
    console.print(f"API docs: {escape(platform.url)}/docs    Stop with Ctrl-C.")


def print_whole(console: Console, table: Table) -> None:
    """Print ``table`` fitted to the terminal; in a log or a pipe (no terminal to fit: rich
    assumes 80 columns) at its own width, so that no URL or name is cut."""
    if console.is_terminal:
        console.print(table)
        return
    unbounded = console.options.update_width(1_000_000)
    width = console.width
    console.width = max(width, Measurement.get(console, unbounded, table).maximum)
    try:
        console.print(table)
    finally:
        console.width = width
