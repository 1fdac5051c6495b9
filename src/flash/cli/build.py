"""``flash build``: parse options, run the pipeline, print the summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from flash.build.dependencies import DependencyOptions
from flash.build.errors import BuildError
from flash.build.pipeline import FLASH_DIR, BuildOptions, BuildResult, build_project
from flash.cli._output import (
    build_warning,
    check_state_folder,
    console,
    describe,
    stage_printer,
    user_errors,
)

_DEFAULTS = DependencyOptions()


def build(
    project_dir: Annotated[Path, typer.Argument(help="Project to build.")] = Path("."),
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
        typer.Option("--exclude", help="Package the base image provides: not vendored."),
    ] = None,
    # From the environment too: a token in a URL on the command line shows in `ps`.
    index_url: Annotated[
        str | None, typer.Option(envvar="FLASH_INDEX_URL", help="Package index URL.")
    ] = None,
    extra_index_url: Annotated[
        list[str] | None,
        typer.Option(
            envvar="FLASH_EXTRA_INDEX_URL", help="Extra package index URL (env: space-separated)."
        ),
    ] = None,
    find_links: Annotated[
        list[str] | None,
        typer.Option(envvar="FLASH_FIND_LINKS", help="Directory or URL with wheels."),
    ] = None,
    no_index: Annotated[bool, typer.Option("--no-index", help="Do not use an index.")] = False,
    keep_build: Annotated[
        bool, typer.Option("--keep-build", help="Keep .flash/.build/ for inspection.")
    ] = False,
    max_size: Annotated[
        float,
        typer.Option(
            "--max-size", help="Largest archive allowed, in MB of its contents before compression."
        ),
    ] = 500.0,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if up to date.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks.")] = False,
) -> None:
    """Build PROJECT_DIR into .flash/archive.tar.gz with one handler per endpoint."""
    options = BuildOptions(
        project_dir=project_dir,
        output=output,
        keep_build=keep_build,
        max_size_mb=max_size,
        force=force,
        dependencies=DependencyOptions(
            python_version=python_version,
            platform=platform,
            no_deps=no_deps,
            exclude=tuple(exclude or ()),
            index_url=index_url,
            extra_index_urls=tuple(extra_index_url or ()),
            find_links=tuple(find_links or ()),
            no_index=no_index,
        ),
    )
    check_state_folder(project_dir / FLASH_DIR)
    # OSError: what the build cannot read or write (permissions, a full disk) is named too.
    with user_errors(verbose, BuildError, OSError):
        try:
            result = build_project(options, progress=stage_printer(not as_json))
        except (BuildError, OSError) as exc:
            if as_json:  # a script reading stdout learns why, not only the exit code
                print(json.dumps({"error": describe(exc)}, indent=2))
            raise
    for warning in result.warnings:
        build_warning(str(warning))
    if as_json:
        print(json.dumps(result.summary(), indent=2))
    else:
        print_summary(result)


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
