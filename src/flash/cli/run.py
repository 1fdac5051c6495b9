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
from flash.build.pipeline import FLASH_DIR, BuildOptions, build_project, dependency_input_paths
from flash.cli._output import (
    Stop,
    build_warning,
    check_max_workers,
    check_port,
    check_state_folder,
    console,
    exit_interrupted,
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
from flash.platform.supervisor import die_with_parent

# How long a replaced web app may take to finish the requests it is answering.
WEB_APP_DRAIN_S = 30.0
# How long stopping flash run waits for the web app before killing it.
WEB_APP_STOP_S = 10.0


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
            platform = first_build(
                options, stop, host=host, port=port, max_workers=max_workers, api_key=api_key
            )
            print_endpoints(platform, console)
            web = WebApp(root, host, app_port, platform.client_env(), stop)
            if defines_web_app(web.main):
                web.start(first=True)
            console.print(
                "Scripts reach these endpoints with FLASH_API_BASE="
                f"{escape(platform.url)} (flash.connect does the same)."
            )
            if watch:
                watch_and_reload(root, stop, Reloader(options, platform, web, stop))
            else:
                wait_for_stop(stop)
            if web.failure is not None:
                raise web.failure
        finally:
            if web is not None:
                web.stop()
            if platform is not None:
                platform.stop()


def first_build(options: BuildOptions, stop: Stop, **platform_options: object) -> LocalPlatform:
    """Build and start serving; a stopping signal during the build exits as interrupted
    (the build's child processes got it too: their failure is not the project's)."""
    try:
        platform = start_project(
            options, progress=stage_printer(True), warn=build_warning, **platform_options
        )
    except KeyboardInterrupt:
        exit_interrupted(stop, "the first build")
    except BuildError:
        if stop.is_set():
            exit_interrupted(stop, "the first build")
        raise
    if stop.is_set():
        platform.stop()
        exit_interrupted(stop, "the first build")
    return platform


def watch_and_reload(root: Path, stop: Stop, reload: Reloader) -> None:
    """Reload on each batch of changes to what the build reads, until ``stop``."""
    while not stop.is_set():
        inputs = read_anyway(root)
        # Files outside the project are watched by name: an editor's save replaces the file
        # (a new inode), and a requirements edit may name others; both need a new watch.
        outside = sorted(path for path in inputs if not path.is_relative_to(root))
        for changes in watchfiles.watch(
            root,
            *(path for path in outside if path.exists()),
            watch_filter=source_filter(root, inputs),
            stop_event=stop,
            raise_interrupt=False,
        ):
            reload(changes)
            touched = {Path(path).resolve() for _, path in changes}
            if read_anyway(root) != inputs or touched.intersection(outside):
                break
        else:
            return  # stopped
        reload(set())  # what changed while that watch ended (a skipped build if nothing)


class Reloader:
    """Rebuilds and reloads the platform and the web app for a batch of changes."""

    def __init__(self, options: BuildOptions, platform: LocalPlatform, web: WebApp, stop: Stop):
        self.options = options
        self.platform = platform
        self.web = web
        self.stop = stop
        self.broken = False  # the last rebuild failed: the next good one says so
        self.unserved: str | None = None  # a build that was made but could not be served

    def __call__(self, changes: set[tuple[watchfiles.Change, str]]) -> None:
        outcome = self.rebuild()
        main_changed = any(Path(path).resolve() == self.web.main for _, path in changes)
        # The web app imports the project's files as they are on disk: any new build may
        # change what it sees (which files, read when, cannot be told), so it restarts;
        # main.py may also be ignored by the build.
        if outcome == "new" or (outcome == "same" and (main_changed or self.web.down)):
            self.update_web_app()

    def rebuild(self) -> str:
        """Build and serve what changed: "new", "same" (nothing to reload) or "failed"."""
        try:
            result = build_project(self.options, progress=stage_printer(False))
        except KeyboardInterrupt:
            return "failed"  # Ctrl-C reached the build's children: the watch stops next
        except BuildError as exc:
            if not self.stop.is_set():
                self.broken = True
                warn("Build failed, still serving the last build", str(exc))
            return "failed"
        if result.skipped and result.sha256 != self.unserved:
            if self.broken:
                self.broken = False
                console.print(f"[green]Build good again:[/] serving {result.sha256[:12]}")
            return "same"
        for warning in result.warnings:
            build_warning(str(warning))
        try:
            self.platform.load_copy(
                extract_for_serving(result.archive, self.platform.copies_root, sha256=result.sha256)
            )
        except PlatformError as exc:
            self.broken, self.unserved = True, result.sha256
            warn("Cannot serve the new build, still serving the last", str(exc))
            return "failed"
        self.broken, self.unserved = False, None
        console.print(f"[green]Reloaded[/] {result.sha256[:12]}")
        return "new"

    def update_web_app(self) -> None:
        """(Re)start main.py's web app if main.py binds ``app``; else stop it."""
        if not defines_web_app(self.web.main):
            if self.web.running:
                self.web.stop()
                console.print("main.py no longer binds `app`: its web app is stopped")
            return
        try:
            self.web.start(first=False)
        except WebAppError as exc:  # e.g. its port taken meanwhile: the endpoints serve on
            warn("Cannot start the web app", str(exc))


def read_anyway(root: Path) -> frozenset[Path]:
    """Files read whatever the ignore files say: by the build, requirements.txt and
    pyproject.toml and the files requirements.txt names with -r/-c (even outside the
    project); by the web app, main.py."""
    listed = (root / "requirements.txt", root / "pyproject.toml", root / "main.py")
    return frozenset(path.resolve() for path in (*listed, *dependency_input_paths(root)))


def source_filter(
    root: Path, read_anyway: frozenset[Path] = frozenset()
) -> Callable[[watchfiles.Change, str], bool]:
    """Changes to files a build would collect, or to ``read_anyway``; never .flash/ (our
    own writes) or ignored ones."""

    def wanted(_change: watchfiles.Change, path: str) -> bool:
        resolved = Path(path).resolve()
        if resolved in read_anyway:
            return True
        try:
            rel = resolved.relative_to(root).as_posix()
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


# uvicorn serving main:app on the listening socket flash run holds (argv: its descriptor,
# a pipe's write end, the drain time). One byte down the pipe once the app takes connections.
_SERVE = """
import os, socket, sys

import uvicorn

listener = socket.socket(fileno=int(sys.argv[1]))
ready = int(sys.argv[2])


class Server(uvicorn.Server):
    async def startup(self, sockets=None):
        await super().startup(sockets=sockets)
        if self.started:
            os.write(ready, b"1")


config = uvicorn.Config("main:app", timeout_graceful_shutdown=float(sys.argv[3]))
Server(config).run(sockets=[listener])
"""


class WebApp:
    """``main:app`` served by uvicorn in a child process, with the platform's address in its
    env. As with ``uvicorn --reload``, this process holds the listening socket: while an app
    restarts, connections wait for the new one instead of being refused, and the old one
    finishes the requests it has (at most WEB_APP_DRAIN_S) once the new one is ready."""

    def __init__(self, root: Path, host: str, port: int, env: dict[str, str], stop: Stop):
        self.main = root / "main.py"
        self.host = host
        self.port = port
        self.env = {**os.environ, **env}
        self.stop_event = stop
        self.failure: WebAppError | None = None  # the first start failed: flash run stops
        self.down = False  # the app failed: the next change starts it again
        self.listener: socket.socket | None = None
        self.latest: subprocess.Popen[bytes] | None = None  # the last started
        self.serving: subprocess.Popen[bytes] | None = None  # the one taking connections
        self.draining: set[subprocess.Popen[bytes]] = set()
        self.lock = threading.Lock()  # the fields above change in the watching threads too

    @property
    def running(self) -> bool:
        return self.latest is not None or self.serving is not None

    def start(self, *, first: bool) -> None:
        """Start the app anew; the one serving goes once the new one is ready. Raises
        WebAppError if the port cannot be had. A failure to start is reported (``first``:
        it also stops flash run). Call from the main thread: the child dies with the thread
        that started it."""
        was_running = self.running
        with self.lock:  # a failing app's watcher must not close the socket meanwhile
            proc, ready = self._spawn(self._listen())
            self.latest, self.down = proc, False
        threading.Thread(target=self._watch, args=(proc, ready, first), daemon=True).start()
        if not was_running:
            console.print(f"Web app (main.py) on http://{escape(self.host)}:{self.port}")

    def _spawn(self, listener: socket.socket) -> tuple[subprocess.Popen[bytes], int]:
        """uvicorn on ``listener``; and the pipe end it says "ready" on."""
        ready, ready_w = os.pipe()
        argv = [str(listener.fileno()), str(ready_w), str(WEB_APP_DRAIN_S)]
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _SERVE, *argv],
                cwd=self.main.parent,
                env=self.env,
                pass_fds=(listener.fileno(), ready_w),
                preexec_fn=die_with_parent,
            )
        except BaseException:
            os.close(ready)
            raise
        finally:
            os.close(ready_w)
        return proc, ready

    def _listen(self) -> socket.socket:
        if self.listener is not None:
            return self.listener
        listener = socket.socket(socket.AF_INET)  # as the platform binds its own port
        # Bound as uvicorn binds: a port left in TIME_WAIT is free, a listened one is not.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
            listener.listen(2048)  # uvicorn's backlog
        except OSError as exc:
            listener.close()
            raise WebAppError(
                f"cannot serve main.py's web app on {self.host} port {self.port} "
                f"(--app-port): {exc.strerror or exc}"
            ) from None
        # Port 0: the one found here, so the address shown (and restarts) are right.
        self.port = listener.getsockname()[1]
        self.listener = listener
        return listener

    def _watch(self, proc: subprocess.Popen[bytes], ready: int, first: bool) -> None:
        """Until ``proc`` exits: once it is ready it replaces the one serving; an exit we
        did not cause is reported."""
        with os.fdopen(ready, "rb") as pipe:
            started = pipe.read(1) == b"1"  # nothing: it exited first
        with self.lock:
            current = proc is self.latest
            if started and current:
                self._drain(self.serving)
                self.serving = proc
            elif started:
                self._drain(proc)  # a newer one is starting, or flash run stops
        if not current:
            return
        code = proc.wait()
        with self.lock:
            if proc is not self.latest:
                return  # replaced or stopped by us
            self._fail_now()
        when = "while starting" if not started else "while serving"
        failure = WebAppError(
            f"main.py's web app (--app-port {self.port}) exited with code {code} {when}; "
            "its output is above"
        )
        if first and not started:
            self.failure = failure
            self.stop_event.set()
        else:
            warn(
                "Error",
                f"{failure}. The endpoints serve on; the web app is down until the next change",
            )

    def _fail_now(self) -> None:
        """With the lock: no app any more; connections are refused rather than kept waiting."""
        self._drain(self.serving)
        self.latest = self.serving = None
        self.down = True
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def _drain(self, proc: subprocess.Popen[bytes] | None) -> None:
        """With the lock: let ``proc`` finish its requests and exit (SIGTERM makes uvicorn
        stop taking connections), killed if it takes too long."""
        if proc is None or proc in self.draining:
            return
        self.draining.add(proc)
        proc.terminate()
        threading.Thread(target=self._reap, args=(proc, WEB_APP_DRAIN_S + 5), daemon=True).start()

    def _reap(self, proc: subprocess.Popen[bytes], limit_s: float) -> None:
        try:
            proc.wait(limit_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with self.lock:
            self.draining.discard(proc)

    def stop(self) -> None:
        """Stop every app process (at most WEB_APP_STOP_S each) and free the port."""
        with self.lock:
            procs = {p for p in (self.latest, self.serving, *self.draining) if p is not None}
            self.latest = self.serving = None  # from here their exits are ours, not failures
            self.draining.clear()
            if self.listener is not None:
                self.listener.close()
                self.listener = None
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(WEB_APP_STOP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
