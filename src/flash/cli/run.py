"""``flash run``: build, serve on this machine, and rebuild on every source change.

A change rebuilds incrementally and swaps the app: running jobs finish on the old
workers, new jobs go to new ones. A broken change is reported and the last good build
keeps serving; a first build that fails is reported and tried again at the next change.
The project's ``main.py`` web app, when it defines ``app``, is served too,
its ``@remote`` calls going to the local endpoints. The machinery is flash.platform's
(devloop, web_app); this module parses, calls it and prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from flash.cli._output import (
    Stop,
    build_warning,
    check_api_key,
    check_can_listen,
    check_max_workers,
    check_port,
    check_state_folder,
    console,
    describe,
    exit_interrupted,
    fail,
    stage_printer,
    stop_on_signals,
    user_errors,
    wait_for_stop,
    warn,
)
from flash.cli.build import (
    ExtraIndexUrlOption,
    FindLinksOption,
    IndexUrlOption,
    NoIndexOption,
    dependency_options,
    project_dir_or_cwd,
)
from flash.cli.serve import print_endpoints
from flash.runtime.protocol import FLASH_DIR

if TYPE_CHECKING:
    from flash.build.dependencies import DependencyOptions
    from flash.build.pipeline import BuildOptions
    from flash.platform.devloop import Snapshot
    from flash.platform.local import LocalPlatform
    from flash.platform.web_app import WebApp


def run(
    project_dir: Annotated[
        Path | None,
        typer.Argument(
            # No brackets: the help is rich markup, where "[default: ...]" would be a tag.
            help="Project to build and serve (default: the current folder; refused in a "
            "package folder of a project, whose root is to be run instead)",
            show_default=False,
        ),
    ] = None,
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
    index_url: IndexUrlOption = None,
    extra_index_url: ExtraIndexUrlOption = None,
    find_links: FindLinksOption = None,
    no_index: NoIndexOption = False,
) -> None:
    """Build PROJECT_DIR, serve its endpoints locally, and reload them when the code changes."""
    # The build and the platform load here, not with the CLI: `flash --help` stays quick.
    from flash.build.errors import BuildError
    from flash.build.pipeline import BuildOptions
    from flash.build.schemas import interrupt_import_checks
    from flash.platform.devloop import Reloader, watch_and_reload
    from flash.platform.manifest import PlatformError
    from flash.platform.web_app import WebApp, WebAppError, defines_web_app
    from flash.runtime.signing import SigningKeyError, load_signing_key
    from flash.sdk.keys import KEY_ENV_VAR, key_to_text

    check_port("--port", port)
    check_port("--app-port", app_port)
    check_max_workers(max_workers)
    check_api_key(api_key)
    root = project_dir_or_cwd(project_dir, "run").resolve()
    check_state_folder(root / FLASH_DIR)
    options = BuildOptions(
        project_dir=root,
        dependencies=dependency_options(index_url, extra_index_url, find_links, no_index),
    )
    platform: LocalPlatform | None = None
    web: WebApp | None = None
    with (
        user_errors(False, BuildError, PlatformError, WebAppError, OSError, SigningKeyError),
        # A stop during a build's import check ends that check at once: the project's code
        # may wait forever at import (the first build and reloads both run in this thread).
        stop_on_signals(interrupt=interrupt_import_checks) as stop,
    ):
        # $FLASH_SIGNING_KEY, as flash serve and the scripts take it, else the project's.
        from_env = load_signing_key()
        worker_env = {} if from_env is None else {KEY_ENV_VAR: key_to_text(from_env)}
        warned: list[str] = []  # the first build's warnings: a rebuild does not repeat them

        def build_warned(message: str) -> None:
            warned.append(message)
            build_warning(message)

        try:
            platform = first_build(
                options,
                stop,
                lambda: check_ports(root, host, port, app_port),
                watch=watch,
                build_warned=build_warned,
                host=host,
                port=port,
                max_workers=max_workers,
                api_key=api_key,
                worker_env=worker_env,
            )
            if from_env is not None:
                console.print(
                    f"Pickled calls are signed with the key in ${KEY_ENV_VAR}, not the "
                    "project's key file"
                )
            print_endpoints(platform, console)
            web = WebApp(root, host, app_port, platform.client_env(), stop, say=say, warn=warn)
            # Unless main.py surely binds no `app`: a syntax error is uvicorn's to report.
            if defines_web_app(web.main) is not False:
                web.start(fatal_if_it_fails=True)
            console.print(
                "Scripts reach these endpoints with FLASH_API_BASE="
                f"{escape(platform.url)} (flash.connect does the same)."
            )
            if watch:
                reloader = Reloader(
                    options,
                    platform,
                    web,
                    stop,
                    say=say,
                    warn=warn,
                    progress=stage_printer(False),
                    warned=warned,
                )
                watch_and_reload(root, stop, reloader, options.dependencies)
            else:
                wait_for_stop(stop)
            if web.failure is not None:
                raise web.failure
        finally:
            # A second stopping signal (Ctrl-C again) ends the wait for the web app's
            # requests, and gives the jobs running no grace: they run again at the next start.
            if web is not None:
                web.close(stop.forced)
            if platform is not None and stop.forced.is_set():
                platform.stop(grace_s=0.0)
            elif platform is not None:
                platform.stop()


def say(message: str) -> None:
    console.print(escape(message), soft_wrap=True)


def check_ports(root: Path, host: str, port: int, app_port: int) -> None:
    """Refuse a busy --port, or --app-port when main.py may serve an app, before the build."""
    from flash.platform.web_app import defines_web_app

    serves_app = defines_web_app(root / "main.py") is not False
    # Options that cannot go together first: an error whether or not the port is free.
    if serves_app and port == app_port != 0:
        fail(f"--port and --app-port are both {port}: main.py's web app needs a port of its own")
    check_can_listen("--port", host, port, "the platform")
    if serves_app:
        check_can_listen("--app-port", host, app_port, "main.py's web app")


def first_build(
    options: BuildOptions,
    stop: Stop,
    before_build: Callable[[], None],
    *,
    watch: bool,
    build_warned: Callable[[str], None] = build_warning,
    **platform_options: object,
) -> LocalPlatform:
    """Build and start serving. A build that fails raises BuildError, or when ``watch``
    is reported and tried again at the next change to the project, as dev servers do.
    ``build_warned`` gets each warning of the build served."""
    from flash.build.errors import BuildError
    from flash.build.pipeline import ChangedWhileBuilding
    from flash.platform.devloop import snapshot, wait_until_settled, waiting_to_settle
    from flash.platform.local import lock_state_dir

    root = options.project_dir
    # Held from the first build to serving, failed builds and waits included: a second
    # flash run of the project is refused throughout, and cannot slip in between.
    state_lock = lock_state_dir(root / FLASH_DIR)
    waited = False  # for files changing while it built, said once
    try:
        while True:
            # What this build will have read.
            read = snapshot(root, options.dependencies) if watch else None
            try:
                # A duplicate holds the same lock: the build's, then the platform's, to
                # close (closed on failure), while ours keeps the project held meanwhile.
                return _build_and_serve(
                    options,
                    stop,
                    before_build,
                    state_lock=os.dup(state_lock),
                    build_warned=build_warned,
                    **platform_options,
                )
            except ChangedWhileBuilding as exc:
                if not watch:
                    raise
                # No failure: the files are built once they stay put.
                if not waited:
                    say(waiting_to_settle(exc))
                waited = True
                if not wait_until_settled(options, stop):
                    exit_interrupted(stop, "the first build")
                continue
            except BuildError as exc:
                if not watch:
                    raise
                warn("Error", describe(exc))  # as the error ending the command would look
            console.print(
                "flash run waits for a change to the project to build again (Ctrl+C stops)"
            )
            _wait_for_a_change(root, options.dependencies, stop, read)
    finally:
        os.close(state_lock)  # a platform serving holds its duplicate


def _build_and_serve(
    options: BuildOptions,
    stop: Stop,
    before_build: Callable[[], None],
    *,
    state_lock: int,
    build_warned: Callable[[str], None] = build_warning,
    **platform_options: object,
) -> LocalPlatform:
    """Build and start serving; a stopping signal during the build exits as interrupted
    (the build's child processes got it too: their failure is not the project's).
    ``before_build`` runs once the project's state folder is held, by ``state_lock``: a
    ``lock_state_dir`` descriptor, the platform's then (closed if this raises)."""
    from flash.build.errors import BuildError
    from flash.platform.devloop import interrupt_failure
    from flash.platform.project import start_project

    try:
        platform = start_project(
            options,
            progress=stage_printer(True),
            warn=build_warned,
            before_build=before_build,
            state_lock=state_lock,
            **platform_options,
        )
    except KeyboardInterrupt:
        failure = interrupt_failure(stop)
        if failure is None:
            exit_interrupted(stop, "the first build")
        raise failure from None
    except BuildError:
        if stop.is_set():
            exit_interrupted(stop, "the first build")
        raise
    if stop.is_set():
        platform.stop()
        exit_interrupted(stop, "the first build")
    return platform


# Tries at starting the watch flash run waits on after a failed first build.
_WATCH_ATTEMPTS = 5


def _wait_for_a_change(
    root: Path, dependencies: DependencyOptions, stop: Stop, read: Snapshot | None
) -> None:
    """Wait for a change to what the build reads (``read``: what the failed build read);
    a stopping signal exits as interrupted, a project folder gone or a watch that cannot
    start as a failure (else each would build again at once, and again)."""
    from flash.platform.devloop import wait_for_change

    for attempt in range(_WATCH_ATTEMPTS):
        try:
            changed = wait_for_change(root, stop, read, dependencies)
            break
        except OSError as exc:
            _check_still_there(root)
            # A folder removed as the watch began (the project being deleted or moved,
            # a tool's temporary folder) fails it: watch afresh, a little later each time
            # (a deletion under way ends). One that fails again and again cannot start.
            if attempt == _WATCH_ATTEMPTS - 1:
                fail(describe(exc))
            if stop.wait(0.05 * 2**attempt):
                exit_interrupted(stop, "the wait for a change to build again")
    if not changed or stop.is_set():
        exit_interrupted(stop, "the wait for a change to build again")
    _check_still_there(root)


def _check_still_there(root: Path) -> None:
    """Fail if the project folder was moved or deleted: a build would recreate it (its
    state folder) and wait on an empty one."""
    if not root.is_dir():
        fail(f"the project folder {root} is gone (moved or deleted): flash run stops")
