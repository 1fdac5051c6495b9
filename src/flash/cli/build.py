"""``flash build``: parse options, run the pipeline, print the summary."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flash.build.dependencies import DependencyOptions
from flash.cli._output import (
    build_warning,
    check_state_folder,
    console,
    describe,
    exit_interrupted,
    fail,
    stage_printer,
    stop_on_signals,
    user_errors,
)
from flash.runtime.protocol import FLASH_DIR

if TYPE_CHECKING:
    from flash.build.pipeline import BuildResult

_DEFAULTS = DependencyOptions()

# What marks a folder as a project's root: its dependency files, or a build's state; a
# folder's own .git too.
_ROOT_MARKERS = ("pyproject.toml", "requirements.txt", FLASH_DIR)
_OWN_ROOT_MARKERS = (*_ROOT_MARKERS, ".git")


# Where packages come from, for flash build and flash run alike. From the environment too:
# a token in a URL on the command line shows in `ps`.
IndexUrlOption = Annotated[
    str | None, typer.Option(envvar="FLASH_INDEX_URL", help="Package index URL.")
]
ExtraIndexUrlOption = Annotated[
    list[str] | None,
    typer.Option(
        envvar="FLASH_EXTRA_INDEX_URL",
        metavar="URL",
        help="Extra package index URL (env: space-separated).",
    ),
]
FindLinksOption = Annotated[
    list[str] | None,
    typer.Option(
        envvar="FLASH_FIND_LINKS", metavar="PATH|URL", help="Directory or URL with wheels."
    ),
]
NoIndexOption = Annotated[bool, typer.Option("--no-index", help="Do not use an index.")]


def dependency_options(
    index_url: str | None,
    extra_index_url: list[str] | None,
    find_links: list[str] | None,
    no_index: bool,
    **others: Any,
) -> DependencyOptions:
    """DependencyOptions of the package source options, and ``others``."""
    return DependencyOptions(
        index_url=index_url,
        extra_index_urls=tuple(extra_index_url or ()),
        find_links=tuple(find_links or ()),
        no_index=no_index,
        **others,
    )


def _check_project_dir(project_dir: Path, command: str) -> None:
    # Before any state is made in it: `flash run` of a mistyped name would create the folder
    # (its .flash/) and wait there for a project to appear.
    from flash.build.pipeline import project_dir_problem  # the build's own rule

    problem = project_dir_problem(project_dir)
    if problem is None:
        return
    if project_dir.is_file():  # `flash run app.py`, as `modal run app.py` is typed
        parent = shlex.quote(str(project_dir.parent))
        problem += f": give the folder that holds the project (`flash {command} {parent}`)"
    fail(problem)


def project_dir_or_cwd(project_dir: Path | None, command: str) -> Path:
    """PROJECT_DIR as given, else the current folder, unless that is a package of a project
    whose root is above it: built as a project of its own, it would get its own signing key
    and functions named without the package (``a.f``, not ``w.a.f``), so it is refused
    unless passed explicitly."""
    if project_dir is not None:
        _check_project_dir(project_dir, command)
        return project_dir
    cwd = Path.cwd()
    # A folder with dependency files, a build's state or a repository of its own is a
    # project's root, a package or not (once built with `.`, it is one).
    own_root = any((cwd / marker).exists() for marker in _OWN_ROOT_MARKERS)
    if (cwd / "__init__.py").is_file() and not own_root:
        for ancestor in cwd.parents:
            marker = next((m for m in _ROOT_MARKERS if (ancestor / m).exists()), None)
            if marker is not None:
                fail(
                    f"{cwd} is a package of the project at {ancestor} (which has {marker}); "
                    f"run `flash {command}` there (or `flash {command} {ancestor}`), or, to "
                    f"{command} this folder as a project of its own, pass it: "
                    f"`flash {command} .`"
                )
            if not (ancestor / "__init__.py").is_file():
                break  # above the packages: not this project's
    return Path(".")


def build(
    project_dir: Annotated[
        Path | None,
        typer.Argument(
            # No brackets: the help is rich markup, where "[default: ...]" would be a tag.
            help="Project to build (default: the current folder; refused in a package folder "
            "of a project, whose root is to be built instead)",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str, typer.Option("--output", "-o", help="Archive file name, inside .flash/.")
    ] = "archive.tar.gz",
    python_version: Annotated[
        str, typer.Option(help="Target Python version of the workers.")
    ] = _DEFAULTS.python_version,
    platform: Annotated[
        str, typer.Option(help="Target platform (uv --python-platform).")
    ] = _DEFAULTS.platform,
    no_deps: Annotated[
        bool, typer.Option("--no-deps", help="Vendor only the direct requirements.")
    ] = False,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude", metavar="NAME", help="Package the base image provides: not vendored."
        ),
    ] = None,
    index_url: IndexUrlOption = None,
    extra_index_url: ExtraIndexUrlOption = None,
    find_links: FindLinksOption = None,
    no_index: NoIndexOption = False,
    keep_build: Annotated[
        bool, typer.Option("--keep-build", help="Keep .flash/.build/ for inspection.")
    ] = False,
    max_size: Annotated[
        float,
        typer.Option(
            "--max-size", help="Largest archive allowed, in MB of its contents before compression."
        ),
    ] = 500.0,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Rebuild even if up to date, and re-resolve and reinstall the dependencies "
            "(picks up new versions and rewritten wheels; without it, a resolution is reused "
            "like a lock file).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks.")] = False,
) -> None:
    """Build PROJECT_DIR into .flash/archive.tar.gz with one handler per endpoint."""
    from flash.build.errors import BuildError
    from flash.build.pipeline import BuildOptions, build_project
    from flash.build.target import check_platform

    project_dir = project_dir_or_cwd(project_dir, "build")
    options = BuildOptions(
        project_dir=project_dir,
        output=output,
        keep_build=keep_build,
        max_size_mb=max_size,
        force=force,
        dependencies=dependency_options(
            index_url,
            extra_index_url,
            find_links,
            no_index,
            python_version=python_version,
            platform=platform,
            no_deps=no_deps,
            exclude=tuple(exclude or ()),
        ),
    )
    check_state_folder(project_dir / FLASH_DIR)
    # OSError: what the build cannot read or write (permissions, a full disk) is named too.
    # SIGTERM and SIGHUP end the build as a Ctrl-C does: its child processes are ended and
    # its temporary files removed; an archive is written whole or not at all.
    with user_errors(verbose, BuildError, OSError), stop_on_signals(interrupt=_interrupt) as stop:
        try:
            check_platform(platform)
            result = build_project(options, progress=stage_printer(not as_json))
        except KeyboardInterrupt:
            if not stop.is_set():
                raise  # a SIGINT to the import check alone: as before, Typer's "Aborted!"
            exit_interrupted(stop, "the build")
        except (BuildError, OSError) as exc:
            if stop.is_set():
                exit_interrupted(stop, "the build")
            if as_json:  # a script reading stdout learns why, not only the exit code
                print(json.dumps({"error": describe(exc)}, indent=2))
            raise
    for warning in result.warnings:
        build_warning(str(warning))
    if as_json:
        print(json.dumps(result.summary(), indent=2))
    else:
        print_summary(result)


def _interrupt() -> None:
    # The build runs in this thread only: whatever it waits on, it is interrupted.
    raise KeyboardInterrupt


def print_summary(result: BuildResult) -> None:
    table = Table(title="Endpoints", title_justify="left")
    table.add_column("endpoint")
    table.add_column("type")
    table.add_column("handler")
    table.add_column("functions")
    for name, res in result.manifest.resources.items():
        functions = ", ".join(f.name for f in res.functions)
        # Names and paths are the project's text: a bracket in them is not markup.
        table.add_row(*map(escape, (name, res.type, res.handler_file, functions)))
    console.print(table)
    pins = result.manifest.dependencies.pins
    state = "up to date" if result.skipped else "built"
    archive = escape(str(result.archive))
    console.print(
        f"[bold]{state}[/] {archive} ({result.size / 1024:.1f} KiB, {result.files} files, "
        f"{len(pins)} dependencies)\nsha256 {result.sha256}"
    )
