"""``flash serve ARCHIVE``: run a built archive on this machine behind RunPod's serverless API."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from flash.cli._output import check_port, user_errors
from flash.platform.local import LocalPlatform
from flash.platform.manifest import PlatformError
from flash.platform.project import serve_archive

DEFAULT_STATE_DIR = Path(".flash")


def serve(
    archive: Annotated[Path, typer.Argument(help="Archive written by `flash build`.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8000,
    max_workers: Annotated[
        int | None,
        typer.Option(
            help="Most worker processes at once, all endpoints together [default: cores]."
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
    check_port("--port", port)
    with user_errors(False, PlatformError):
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
    platform = LocalPlatform(
        state_dir, host=host, port=port, max_workers=max_workers, api_key=api_key
    )
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        serve_archive(platform, archive)
        print_endpoints(platform, Console())
        stop.wait()
    finally:
        platform.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def print_endpoints(platform: LocalPlatform, console: Console) -> None:
    table = Table(title=f"Flash platform on {platform.url}")
    table.add_column("endpoint")
    table.add_column("url")
    table.add_column("functions")
    for endpoint in platform.endpoints():
        table.add_row(endpoint["name"], endpoint["url"], "\n".join(endpoint["functions"]))
    console.print(table)
    console.print(f"API docs: {platform.url}/docs    Stop with Ctrl-C.")
