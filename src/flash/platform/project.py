"""A project served on this machine: build it, serve the build, send calls there.

``flash run`` starts a project this way; a script or a test does it in one line::

    from flash.platform import serve_project

    with serve_project("my-project"):
        vectors = asyncio.run(embed(["hello"]))  # ran in a worker process of the platform
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flash.build.dependencies import sources_from_environment
from flash.build.pipeline import BuildOptions, Progress, build_project
from flash.platform.archive import extract_for_serving
from flash.platform.local import LocalPlatform, lock_state_dir
from flash.runtime.protocol import SOURCE_DIR_ENV_VAR
from flash.runtime.remote import set_invoker
from flash.sdk.connect import connect

__all__ = ["serve_archive", "serve_project", "start_project"]


def start_project(
    options: BuildOptions,
    *,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
    before_build: Callable[[], None] | None = None,
    state_lock: int | None = None,
    **platform_options: Any,
) -> LocalPlatform:
    """Build the project and serve the build on a started LocalPlatform whose state (jobs,
    signing key, extracted copies) is the project's ``.flash/``; ``warn`` gets each of the
    build's warnings; ``before_build`` is called once the state folder is held, to refuse
    what would fail after the build (a busy port). ``platform_options`` go to
    LocalPlatform. ``state_lock``: the state folder's ``lock_state_dir`` descriptor, held
    already, used as one taken here would be (the platform's; closed if this raises).
    Raises BuildError or PlatformError; nothing is left running then."""
    state_dir = options.project_dir.resolve() / ".flash"
    # A platform already serving from the state folder is refused before the build, not
    # after it; the lock taken here is the platform's, so no other can slip in between.
    if state_lock is None:
        state_lock = lock_state_dir(state_dir)
    try:
        if before_build is not None:
            before_build()
        result = build_project(options, progress=progress)
        if warn is not None:
            for warning in result.warnings:
                warn(str(warning))
        # Workers' tracebacks name the project's files, not the served copy's.
        worker_env = {SOURCE_DIR_ENV_VAR: str(options.project_dir.resolve())}
        worker_env.update(platform_options.pop("worker_env", None) or {})
        platform = LocalPlatform(state_dir, worker_env=worker_env, **platform_options)
    except BaseException:
        os.close(state_lock)
        raise
    serve_archive(platform, result.archive, sha256=result.sha256, state_lock=state_lock)
    return platform


def serve_archive(
    platform: LocalPlatform,
    archive: Path,
    *,
    sha256: str | None = None,
    state_lock: int | None = None,
) -> None:
    """Start ``platform`` and serve ``archive`` (a build) on it; ``state_lock``, a held
    ``lock_state_dir`` descriptor, is handed to the platform (closed on failure). Raises
    PlatformError; nothing is left running or held then."""
    # Held before the platform starts tidying copies, so the last run's copy is reused.
    try:
        copy = extract_for_serving(archive, platform.copies_root, sha256=sha256)
    except BaseException:
        if state_lock is not None:
            os.close(state_lock)
        raise
    try:
        platform.start(state_lock=state_lock)
    except BaseException:
        copy.release()
        raise
    try:
        platform.load_copy(copy)
    except BaseException:
        platform.stop()
        raise


@contextlib.contextmanager
def serve_project(
    project_dir: str | Path = ".", *, progress: Progress | None = None, **platform_options: Any
) -> Iterator[LocalPlatform]:
    """Build ``project_dir``, serve it on this machine and route this process's ``@remote``
    calls to it until the block ends; then stop every worker. Quiet unless ``echo`` is given
    (a callable taking each log line). Packages come from the sources ``flash build`` reads
    from the environment (``$FLASH_INDEX_URL``, ``$FLASH_EXTRA_INDEX_URL``,
    ``$FLASH_FIND_LINKS``)."""
    platform_options.setdefault("echo", None)
    options = BuildOptions(
        project_dir=Path(project_dir).resolve(), dependencies=sources_from_environment()
    )
    platform = start_project(options, progress=progress, **platform_options)
    # The invoker set before, as set (None: calls run in this process or as the environment
    # says); restored at the end.
    previous = set_invoker(None)
    invoker = None
    try:
        invoker = connect(platform.url, platform.api_key, signing_key=platform.signing_key)
        yield platform
    finally:
        set_invoker(previous)
        if invoker is not None:
            invoker.close()  # not left for the garbage collector: the platform is going
        platform.stop()
