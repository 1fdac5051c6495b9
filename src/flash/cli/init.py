"""``flash init``: write a starter project that builds with no edits."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from string import Template
from typing import Annotated

import typer
from rich.markup import escape

from flash.cli._output import console, user_errors

TEMPLATE_DIR = Path(__file__).parent / "template"
# Template files that would be special in this package's own tree get a neutral name here.
_RENAMES = {"flashignore.tmpl": ".flashignore", "gitignore.tmpl": ".gitignore"}


class InitError(Exception):
    pass


def write_starter(target: Path, project_name: str | None = None, force: bool = False) -> list[Path]:
    """Copy the starter project into ``target``; refuses to overwrite unless ``force``."""
    name = project_name or _project_name(target)
    planned: list[tuple[Path, str]] = []
    for source in sorted(TEMPLATE_DIR.rglob("*")):
        if not source.is_file() or "__pycache__" in source.parts:
            continue
        rel = source.relative_to(TEMPLATE_DIR).as_posix()
        text = source.read_text(encoding="utf-8")
        if rel.endswith(".tmpl"):
            rel = _RENAMES.get(rel, rel[: -len(".tmpl")])
            text = Template(text).substitute(project=name)
        planned.append((target / rel, text))
    # A file where the project (or one of its folders) goes: refused before anything is
    # written, even with --force, which overwrites files but never turns one into a folder.
    folders = {parent for path, _ in planned for parent in path.parents}
    in_the_way = sorted(p for p in folders if p.exists() and not p.is_dir())
    if in_the_way:
        shown = _listing(in_the_way)
        are = "is a file, not a folder" if len(in_the_way) == 1 else "are files, not folders"
        raise InitError(f"{shown} {are}; choose another directory")
    clashes = [path for path, _ in planned if path.exists()]
    if clashes and not force:
        exist = "already exists" if len(clashes) == 1 else "already exist"
        raise InitError(f"{_listing(clashes)} {exist}; use --force to overwrite")
    for path, text in planned:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:  # e.g. a file above the target, or no permission
            raise InitError(f"cannot write {path}: {exc.strerror or exc}") from None
    return [path for path, _ in planned]


def _listing(paths: list[Path], shown: int = 3) -> str:
    """``a``, ``a and b``, ``a, b and c``, or ``a, b, c and 4 more``."""
    names = [str(p) for p in paths[:shown]]
    if len(paths) > shown:
        return f"{', '.join(names)} and {len(paths) - shown} more"
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]}"


def _project_name(target: Path) -> str:
    # PEP 508: letters, digits, "-", "_" and ".", starting and ending with a letter or digit.
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", target.resolve().name).strip("-._")
    return name or "flash-project"


def init(
    directory: Annotated[Path, typer.Argument(help="Where to create the project.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Create a starter project: GPU, CPU and class endpoints, and a cross-endpoint call."""
    with user_errors(False, InitError):
        written = write_starter(directory, force=force)
    shown = escape(str(directory))  # a bracket in the name is not markup
    console.print(f"Created {len(written)} files in {shown}")
    if directory.resolve() == Path.cwd().resolve():
        console.print("Next: [bold]flash build[/]")
    else:
        # As a shell takes it: a name with a space or a quote in it, quoted.
        folder = escape(shlex.quote(str(directory)))
        console.print(f"Next: [bold]cd {folder} && flash build[/]")
