"""``flash run``: build, serve on this machine, and rebuild on every source change.

A change rebuilds incrementally and swaps the app: running jobs finish on the old
workers, new jobs go to new ones. A broken change is reported and the last good build
keeps serving. The project's ``main.py`` web app, when it defines ``app``, is served too,
its ``@remote`` calls going to the local endpoints.
"""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
import watchfiles
from rich.markup import escape

from flash.build.collect import is_ignored
from flash.build.errors import BuildError
from flash.build.pipeline import FLASH_DIR, BuildOptions, build_project
from flash.cli._output import (
    build_warning,
    check_max_workers,
    check_port,
    check_state_folder,
    console,
    stage_printer,
    stop_on_signals,
    user_errors,
    wait_for_stop,
    warn,
)
from flash.cli.serve import print_endpoints
from flash.platform.archive import extract_for_serving
from flash.platform.local import LocalPlatform
from flash.platform.manifest import PlatformError
from flash.platform.project import start_project


def run(
    project_dir: Annotated[Path, typer.Argument(help="Project to build and serve.")] = Path("."),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the platform (0: any free port).")] = 8000,
    app_port: Annotated[
        int, typer.Option(help="Port of main.py's web app, if any (0: any free port).")
    ] = 8001,
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
    watch: Annotated[bool, typer.Option(help="Rebuild and reload on source changes.")] = True,
) -> None:
    """Build PROJECT_DIR, serve its endpoints locally, and reload them when the code changes."""
    check_port("--port", port)
    check_port("--app-port", app_port)
    check_max_workers(max_workers)
    root = project_dir.resolve()
    check_state_folder(root / FLASH_DIR)
    options = BuildOptions(project_dir=root)
    platform: LocalPlatform | None = None
    web: WebApp | None = None
    with (
        user_errors(False, BuildError, PlatformError, WebAppError, OSError),
        stop_on_signals() as stop,
    ):
        try:
            platform = start_project(
                options,
                progress=stage_printer(True),
                warn=build_warning,
                host=host,
                port=port,
                max_workers=max_workers,
                api_key=api_key,
            )
            print_endpoints(platform, console)
            if defines_web_app(root / "main.py"):
                web = WebApp(root, host, app_port, platform.client_env())
                web.start()
                # Watched from a thread: edits made while the app starts reach the watcher.
                threading.Thread(target=web.watch_start_up, args=(stop,), daemon=True).start()
                console.print(f"Web app (main.py) on http://{escape(host)}:{web.port}")
            console.print(
                "Scripts reach these endpoints with FLASH_API_BASE="
                f"{escape(platform.url)} (flash.connect does the same)."
            )
            if watch:
                for _ in watchfiles.watch(
                    root, watch_filter=source_filter(root), stop_event=stop, raise_interrupt=False
                ):
                    reload(options, platform, web)
            else:
                wait_for_stop(stop)
            if web is not None and web.failure is not None:
                raise web.failure
        finally:
            if web is not None:
                web.stop()
            if platform is not None:
                platform.stop()


def reload(options: BuildOptions, platform: LocalPlatform, web: WebApp | None) -> None:
    try:
        result = build_project(options, progress=stage_printer(False))
    except BuildError as exc:
        warn("Build failed, still serving the last build", str(exc))
        return
    if result.skipped:
        return
    for warning in result.warnings:
        build_warning(str(warning))
    try:
        platform.load_copy(
            extract_for_serving(result.archive, platform.copies_root, sha256=result.sha256)
        )
    except PlatformError as exc:
        warn("Cannot serve the new build, still serving the last", str(exc))
        return
    if web is not None:
        try:
            web.restart()
        except WebAppError as exc:  # e.g. its port taken meanwhile: the endpoints serve on
            warn("Cannot restart the web app", str(exc))
    console.print(f"[green]Reloaded[/] {result.sha256[:12]}")


def source_filter(root: Path) -> Callable[[watchfiles.Change, str], bool]:
    """Changes to files a build would collect; never .flash/ (our own writes) or ignored ones."""

    def wanted(_change: watchfiles.Change, path: str) -> bool:
        try:
            rel = Path(path).resolve().relative_to(root).as_posix()
        except ValueError:
            return False
        # Read the ignore files afresh: an edit to one changes what the build collects.
        try:
            return not is_ignored(root, rel)
        except BuildError:
            return True  # an unreadable ignore file: the rebuild reports it

    return wanted


def defines_web_app(main: Path) -> bool:
    """Whether ``main.py`` binds a module-level ``app`` (found without importing it)."""
    try:
        tree = ast.parse(main.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return False
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "app" for t in targets):
            return True
    return False


class WebAppError(Exception):
    pass


class WebApp:
    """``uvicorn main:app`` in a child process, with the platform's address in its env."""

    def __init__(self, root: Path, host: str, port: int, env: dict[str, str]) -> None:
        self.root = root
        self.host = host
        self.port = port
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.failure: WebAppError | None = None

    def start(self) -> None:
        """Start the app; raises WebAppError if its port is taken."""
        # uvicorn would only log a taken port and exit, while this command served on.
        self._check_port_free()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "main:app",
                "--host",
                self.host,
                "--port",
                str(self.port),
            ],
            cwd=self.root,
            env=self.env,
        )

    def _check_port_free(self) -> None:
        with socket.socket(socket.AF_INET) as sock:  # as the platform binds its own port
            # Bound as uvicorn binds: a port left in TIME_WAIT is free, a listened one is not.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.port))
            except OSError as exc:
                raise WebAppError(
                    f"cannot serve main.py's web app on {self.host} port {self.port} "
                    f"(--app-port): {exc.strerror or exc}"
                ) from None
            # Port 0: the one found here, so the address shown (and restarts) are right.
            self.port = sock.getsockname()[1]

    def watch_start_up(self, stop: threading.Event) -> None:
        """Until the app accepts connections: if it exits first (an error in main.py, or its
        port taken since the check), keep that in ``failure`` and set ``stop``."""
        proc = self.proc
        assert proc is not None
        while not stop.is_set():
            try:
                code = proc.wait(0.1)  # the poll interval, ended early by an exit
            except subprocess.TimeoutExpired:
                pass
            else:
                if proc is self.proc:  # not ended by stop() or restart()
                    self.failure = WebAppError(
                        f"main.py's web app (--app-port {self.port}) exited with code {code} "
                        "while starting; its output is above"
                    )
                    stop.set()
                return
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                continue  # not listening yet

    def stop(self) -> None:
        proc, self.proc = self.proc, None  # from here its exit is ours, not a failure
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()
