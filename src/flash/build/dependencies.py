"""Dependency gathering, resolution and vendoring with uv (build stages 5 and 8).

``vendor_dependencies`` is the one call the pipeline makes: it gathers requirement strings from
``requirements.txt``, ``pyproject.toml`` and every ``@remote(dependencies=[...])`` (with the
constraints files and index options requirements files name, applied as ``pip install -r``
applies them; an option it cannot apply is an error, never dropped), resolves them
to exact pins for the *target* interpreter and platform (binary wheels only), and installs the pins
into a directory that is shipped inside the archive.

Both steps are cached under ``cache_dir``: a resolution is keyed by its inputs (like a lock file,
it is not refreshed when an index publishes new versions; made anew where a local --find-links
wheel of a pin was rewritten, whose dependencies may differ) and an installed site directory by
its pins (installed anew there too), so a rebuild with unchanged dependencies never runs uv.
``refresh`` (``flash build --force``) resolves and installs anew, past both caches and uv's,
and caches the results.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import functools
import hashlib
import io
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from flash.build.errors import (
    BuildError,
    BuildWarning,
    mask_config_urls,
    mask_uv_urls,
    masking_indexes,
    redact,
)


@functools.cache
def _packaging_requirement() -> Any:
    """packaging's ``Requirement``, or None. `packaging` is not a declared dependency: it is
    used when present, for exact validation. Imported on first use, not with the CLI."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # exercised in a subprocess by the tests
        return None
    return Requirement


# Bump when the cached data layout or the post-install clean-up changes.
_CACHE_FORMAT = 4

# uv settings that only change how uv talks to the network, never what it resolves, so a user's
# shell may keep them; every other UV_* variable is dropped so results depend on options only.
_UV_TRANSPORT_ENV = frozenset(
    {"UV_HTTP_TIMEOUT", "UV_HTTP_RETRIES", "UV_NATIVE_TLS", "UV_CONCURRENT_DOWNLOADS"}
)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_REGEX_REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*"
    r"(?P<extras>\[[A-Za-z0-9._,\s-]*\])?\s*(?P<rest>(?:[<>=!~@;(].*)?)$"
)
# The oldest and the newest Python the runtime vendored into every archive runs on:
# pyproject.toml's requires-python (>=3.10,<3.14; tests/build check that they agree). Not
# uv's list: uv resolves for any version, and knows CPython releases newer than the runtime
# supports, so a target above MAX_PYTHON would build an archive its runtime was never run on.
MIN_PYTHON = (3, 10)
MAX_PYTHON = (3, 13)
# A target Python as uv takes it (3.11, 3.11.7); and any version number, so that 2.7 or 4.0
# is refused as out of range rather than as malformed.
_PYTHON_VERSION = re.compile(r"3\.\d+(?:\.\d+)?")
_VERSION_NUMBERS = re.compile(r"(\d+)\.(\d+)(?:\.\d+)?")


_BOMS = (  # UTF-32's marks first: UTF-32-LE's starts with UTF-16-LE's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_config(raw: bytes, *, strict: bool = False) -> tuple[str, str]:
    """The text of a config or requirements file and the codec that gives back its bytes:
    the one its byte-order mark names (pip reads UTF-16 requirements files by theirs),
    else UTF-8. Unless ``strict`` (then UnicodeDecodeError), bytes that are not UTF-8 text
    are kept as they are, with surrogateescape. A file that is not the UTF-16 or UTF-32 its
    mark names raises UnicodeDecodeError all the same: read as UTF-8, none of its text would
    be what it says."""
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(codec), codec
            except UnicodeDecodeError:
                if strict or codec != "utf-8-sig":
                    raise
                break
    return raw.decode("utf-8", "strict" if strict else "surrogateescape"), "utf-8"


def encode_config(text: str, codec: str) -> bytes:
    """The bytes of ``text`` as :func:`decode_config` read them with ``codec``."""
    return text.encode(codec, "surrogateescape" if codec == "utf-8" else "strict")


@dataclass(frozen=True)
class DependencyOptions:
    """What to resolve for and where packages come from.

    ``platform`` is a uv ``--python-platform`` value; the default, ``x86_64-manylinux_2_28``,
    matches the glibc 2.28+ x86-64 Linux images serverless workers run on.
    """

    python_version: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    platform: str = "x86_64-manylinux_2_28"
    no_deps: bool = False
    exclude: tuple[str, ...] = ()
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    pre: bool = False  # allow pre-releases (pip's --pre)


def sources_from_environment(environ: Mapping[str, str] | None = None) -> DependencyOptions:
    """The package sources ``$FLASH_INDEX_URL``, ``$FLASH_EXTRA_INDEX_URL`` and
    ``$FLASH_FIND_LINKS`` name (the last two space-separated), as ``flash build`` reads them:
    what ``serve_project`` builds with, so that it resolves from the same indexes."""
    env = os.environ if environ is None else environ
    return DependencyOptions(
        index_url=env.get("FLASH_INDEX_URL") or None,
        extra_index_urls=tuple(env.get("FLASH_EXTRA_INDEX_URL", "").split()),
        find_links=tuple(env.get("FLASH_FIND_LINKS", "").split()),
    )


@dataclass(frozen=True)
class ResolvedDependencies:
    requirements: tuple[str, ...]
    pins: tuple[str, ...]
    excluded: tuple[str, ...]
    site_dir: Path | None
    # The package sources the build used, the requirements files' included: what the
    # build shows or writes from now on masks them (see flash.build.errors.masking_indexes).
    index_urls: tuple[str, ...] = ()
    # Dependencies declared where the build does not read them (see _unread_dependencies).
    warnings: tuple[BuildWarning, ...] = ()


# --------------------------------------------------------------------------- gathering


def normalise_name(name: str) -> str:
    """PEP 503 normal form: lowercase, runs of ``-_.`` become one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _canonical_requirement(text: str) -> str:
    """Return a canonical spelling of ``text``; raise ``ValueError`` if it is not a requirement."""
    requirement = _packaging_requirement()
    if requirement is not None:
        req = requirement(text)
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        if req.url:
            spec = f" @ {req.url}"
            if req.marker is not None:
                spec += " "  # PEP 508: a URL must be followed by whitespace before ';'
        else:
            spec = str(req.specifier)
        marker = f"; {req.marker}" if req.marker is not None else ""
        return f"{normalise_name(req.name)}{extras}{spec}{marker}"
    match = _REGEX_REQUIREMENT.match(text.strip())
    if match is None:
        raise ValueError(f"expected a package name, got {text.strip()!r}")
    names = sorted(_split_extras(match["extras"]))
    extras = f"[{','.join(names)}]" if names else ""
    rest = match["rest"].strip()
    if not rest.startswith(("@", ";")):
        rest = re.sub(r"\s+", "", rest)
    return f"{normalise_name(match['name'])}{extras}{' ' if rest.startswith('@') else ''}{rest}"


def _split_extras(extras: str | None) -> list[str]:
    """The names in a requirement's ``[a, b]``."""
    return [name.strip() for name in (extras or "[]")[1:-1].split(",") if name.strip()]


def requirement_problem(text: str) -> str | None:
    """Why ``text`` is not a requirement (``invalid requirement '...': ...``), or None."""
    return _checked_requirement(text)[1]


def _checked_requirement(text: str, origin: str = "") -> tuple[str | None, str | None]:
    """``text``'s canonical form, or None and why it is refused. The reason quotes it with
    its URLs cut after the host: a direct URL's path may hold a token (the error's file and
    line say where to look)."""
    problem = _variable_problem(text, origin)
    if problem is not None:
        return None, problem
    try:
        canonical = _canonical_requirement(text)
    except ValueError as exc:  # packaging's InvalidRequirement is one
        path = _path_problem(text.strip(), origin)
        if path is not None:
            return None, path
        return None, mask_config_urls(f"invalid requirement {text.strip()!r}{origin}: {exc}")
    problem = _relative_url_problem(canonical, origin)
    if problem is not None:
        return None, problem
    return canonical, None


def _path_problem(text: str, origin: str) -> str | None:
    """Advice for a line that pip installs by its path (a wheel, ``.``, ``.[gpu]``), which
    no requirement parser takes; None for any other text."""
    if _URL_SCHEME.match(text) or "@" in text or "://" in text or len(text.split()) != 1:
        return None  # a URL, a reference or a spec: not a path (its own error, masked)
    folder, _, extras = text.partition("[")
    wheel = folder.endswith(_ARCHIVE_SUFFIXES)
    if not (wheel or folder in (".", "..", "~") or "/" in folder or os.sep in folder):
        return None
    if wheel:
        advice = (
            "put its folder on --find-links (or a --find-links line in requirements.txt) and "
            "require the package by name"
        )
    else:
        extra = " and those of its extras ([project.optional-dependencies])" if extras else ""
        advice = (
            "the project's own files are archived as they are: list its dependencies"
            f"{extra} by name; another project's: build a wheel of it and put its folder on "
            "--find-links"
        )
    return mask_config_urls(
        f"{text!r}{origin} is a path, which flash build does not install: {advice}"
    )


_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip")


# A URL's scheme (``https:``, ``file:``); a direct reference without one is a path.
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _relative_url_problem(canonical: str, origin: str = "") -> str | None:
    """Why a direct reference to a relative path (``pkg @ ./wheels/pkg.whl``) or relative
    ``file:`` URL (``pkg @ file:wheels/pkg.whl``) is refused, or None: uv would read the
    path relative to a temporary folder of the build, and names no package for it in its
    pins; the URL, relative to the folder the build runs in. Neither to the file that
    declares it."""
    match = re.match(r"^[^@;]*@\s*(\S+)", canonical)
    if match is None:
        return None
    if re.match(r"(?i)file:(?!/)", match[1]):
        what = "a relative file: URL"
    elif not _URL_SCHEME.match(match[1]):
        what = "a path"
    else:
        return None
    return mask_config_urls(
        f"{canonical!r}{origin}: a direct reference to {what} ({match[1]!r}), not an absolute "
        "URL, is not supported by flash build; put the wheel's folder on --find-links (or a "
        "--find-links line in requirements.txt) and require the package by name, or give "
        "an absolute file:/// URL"
    )


def _variable_problem(text: str, origin: str = "") -> str | None:
    """Why a requirement with a ``${VAR}`` is refused, or None: as for an option line
    (see _read_requirements_txt), uv would expand it in the requirements file flash build
    gives it, and the value (a token, often) would show in uv's messages and escape the
    up-to-date check."""
    if "${" not in text:
        return None
    return (
        f"{text.strip()!r}{origin}: flash build does not expand ${{...}} in requirements; "
        "write the value out if it is no secret, or serve the package from an index given "
        "to flash build itself (--index-url, --extra-index-url, --find-links), whose URL "
        "it keeps out of what it shows and writes"
    )


def _display_path(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Yield (first line number, line) with backslash continuations joined and comments cut."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        # pip treats '#' as a comment only at line start or after whitespace (URLs keep fragments).
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        yield start, " ".join(part.strip() for part in pending).strip()
        pending = []
    if pending:
        yield start, " ".join(part.strip() for part in pending).strip()


def referenced_files(paths: Iterable[Path]) -> list[Path]:
    """The files requirements files name with ``-r``/``-c`` (or the long forms), and those
    they name in turn, that exist; each relative to the file naming it, as pip reads them."""
    found: list[Path] = []
    pending = list(paths)
    seen = {path.resolve() for path in pending}
    while pending:
        current = pending.pop()
        try:
            text = decode_config(current.read_bytes())[0]
        except (OSError, UnicodeDecodeError):  # archiving it says what is wrong
            continue
        for _, line in _logical_lines(text):
            if not line.startswith("-"):
                continue
            name, target = _option_line(line)  # as the requirements are read
            included = current.parent / target if target else None
            if name not in ("--requirement", "--constraint") or included is None:
                continue
            if included.is_file() and included.resolve() not in seen:
                seen.add(included.resolve())
                found.append(included)
                pending.append(included)
    return found


_Source = tuple[str, str, int | None]  # (text, the file as shown, line)

# pip's short spellings of the requirements-file options flash build knows.
_SHORT_OPTIONS = {
    "-r": "--requirement",
    "-c": "--constraint",
    "-e": "--editable",
    "-i": "--index-url",
    "-f": "--find-links",
}
_VALUE_OPTIONS = frozenset(
    {"--requirement", "--constraint", "--index-url", "--extra-index-url", "--find-links"}
    | {"--only-binary"}
)
_FLAG_OPTIONS = frozenset({"--no-index", "--pre", "--prefer-binary"})
# Options flash build cannot honour: each is an error, never silently dropped.
_REFUSED = {
    "--editable": "an editable install cannot be vendored into the archive (the project's "
    "own files are archived as they are; list other packages by name)",
    "--no-binary": "flash build installs binary wheels only: it never builds a source "
    "distribution for the target platform",
    "--require-hashes": "flash build does not check hashes",
    "--trusted-host": "flash build does not connect to an index without verified TLS",
}


@dataclass
class _Sources:
    """What the project's dependency files ask for: requirements, constraints, and the pip
    options of its requirements files that flash build honours."""

    requirements: list[_Source] = field(default_factory=list)
    constraints: list[_Source] = field(default_factory=list)
    index_url: _Source | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)
    no_index: bool = False
    pre: bool = False
    warnings: list[BuildWarning] = field(default_factory=list)


def _option_line(line: str) -> tuple[str, str]:
    """(long name, value) of an option line: ``-c cons.txt``, ``-ccons.txt``,
    ``--constraint=cons.txt``, ``--pre``; the name is the line itself when it is none."""
    if line.startswith("--"):
        match = re.match(r"(--[^\s=]+)\s*=?\s*(.*)$", line)
        if match is None:  # "--", "-- x", "--=x"
            return line, ""
        return match[1], match[2]
    value = line[2:].strip().removeprefix("=").strip()
    return _SHORT_OPTIONS.get(line[:2], line[:2]), value


def _read_requirements_txt(
    path: Path,
    root: Path,
    seen: set[tuple[Path, bool]],
    sources: _Sources,
    constraint: bool = False,
) -> None:
    """Read ``path`` as ``pip install -r`` would; with ``constraint``, as ``-c`` would (its
    requirements, and those of the files it includes, only constrain versions)."""
    key = (path.resolve(), constraint)
    if key in seen:  # an include cycle adds nothing new
        return
    seen.add(key)
    shown = _display_path(path, root)
    try:
        text = decode_config(path.read_bytes(), strict=True)[0]
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildError(f"cannot read requirements file: {exc}", path=shown) from exc
    for number, line in _logical_lines(text):
        if not line:
            continue
        if not line.startswith("-"):
            if re.search(r"\s--hash\b", line):
                raise BuildError(_hashes_problem(text, line), path=shown, line=number)
            if re.search(r"\s--[A-Za-z]", line):  # pip's per-requirement options
                raise BuildError(
                    mask_config_urls(  # the line's URLs may hold a token: cut after the host
                        "options after a requirement are not supported by flash build: "
                        f"{line!r}; remove them"
                    ),
                    path=shown,
                    line=number,
                )
            (sources.constraints if constraint else sources.requirements).append(
                (line, shown, number)
            )
            continue
        name, value = _option_line(line)
        if "${" in value:
            # pip would expand it; its value (an index token, often) would then show in
            # uv's messages and in what the build keeps, and escape the up-to-date check.
            shown_value = mask_config_urls(value)  # a token, if written out
            raise BuildError(
                f"{name} {shown_value}: flash build does not expand ${{...}} in requirements "
                "files; write the value out, or give the index to flash build itself "
                "(--index-url, --extra-index-url, --find-links)",
                path=shown,
                line=number,
            )
        if name in _REFUSED:
            raise BuildError(
                f"{name} is not supported by flash build: {_REFUSED[name]}; remove it",
                path=shown,
                line=number,
            )
        if name not in _VALUE_OPTIONS | _FLAG_OPTIONS:
            raise BuildError(
                f"{name} in a requirements file is not supported by flash build; remove it",
                path=shown,
                line=number,
            )
        if (name in _VALUE_OPTIONS) != bool(value):
            wanted = "needs a value" if name in _VALUE_OPTIONS else "takes no value"
            raise BuildError(
                mask_config_urls(f"{name} {wanted} (one option a line): {line!r}"),
                path=shown,
                line=number,
            )
        if name in ("--requirement", "--constraint"):
            included = path.parent / value
            if not included.is_file():
                kind = "constraints" if name == "--constraint" else "requirements"
                raise BuildError(
                    f"included {kind} file {value!r} does not exist", path=shown, line=number
                )
            nested = constraint or name == "--constraint"
            _read_requirements_txt(included, root, seen, sources, nested)
        elif name == "--index-url":
            sources.index_url = (value, shown, number)  # the last one read wins, as in pip
        elif name == "--extra-index-url":
            sources.extra_index_urls.append(value)
        elif name == "--find-links":
            # pip reads a local path relative to the requirements file that names it.
            link = value if "://" in value else str(path.parent / value)
            if "://" not in value and not Path(link).exists():
                raise BuildError(f"--find-links {value!r} does not exist", path=shown, line=number)
            sources.find_links.append(link)
        elif name == "--no-index":
            sources.no_index = True
        elif name == "--pre":
            sources.pre = True
        # --only-binary and --prefer-binary: flash build installs binary wheels only anyway.


def _hashes_problem(text: str, line: str) -> str:
    """Why a requirements file with ``--hash`` is refused, and how to write it without: the
    lock exports that write hashes by default. Not passed on to uv: one hash puts it in
    hash-checking mode, which needs one for every package installed, dependencies too."""
    hashed = sum(1 for _, text_line in _logical_lines(text) if "--hash" in text_line)
    lines = "1 requirement carries" if hashed == 1 else f"{hashed} requirements carry"
    return mask_config_urls(  # the line's URLs may hold a token: cut after the host
        f"options after a requirement are not supported by flash build: {line!r}; --hash "
        f"neither ({lines} hashes in this file): export the requirements without them "
        "(`uv export --no-hashes -o requirements.txt`, `poetry export --without-hashes`, "
        "or pip-compile without --generate-hashes)"
    )


def load_toml(path: Path, shown: str) -> dict[str, Any]:
    """Parse a TOML file; errors name ``shown`` (the path as the user knows it) and the line."""
    if sys.version_info >= (3, 11):
        import tomllib as toml_module
    else:  # pragma: no cover - only on Python 3.10
        try:
            import tomli as toml_module
        except ImportError as exc:
            raise BuildError(
                "reading pyproject.toml on Python 3.10 needs the 'tomli' package "
                "(pip install tomli), or use Python 3.11+",
                path=shown,
            ) from exc
    try:
        data: dict[str, Any] = toml_module.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildError(f"cannot read pyproject.toml: {exc}", path=shown) from exc
    except toml_module.TOMLDecodeError as exc:
        where = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        raise BuildError(
            f"invalid TOML: {exc}",
            path=shown,
            line=int(where.group(1)) if where else None,
            col=int(where.group(2)) if where else None,
        ) from exc
    except RecursionError:  # tomllib parses nested arrays and tables by recursion
        raise BuildError("invalid TOML: nested too deeply to read", path=shown) from None
    return data


def _line_of(text: str, needle: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return None


def _key_line(text: str, pattern: str) -> int | None:
    """The line of the TOML ``text`` starting with ``pattern`` (a key's ``name\\s*=``, a
    table's header): never a comment or a value that mentions it."""
    found = re.search(rf"^[ \t]*{pattern}", text, re.MULTILINE)
    return text.count("\n", 0, found.start()) + 1 if found else None


def _read_pyproject(path: Path, root: Path, sources: _Sources) -> None:
    out = sources.requirements
    shown = _display_path(path, root)
    data = load_toml(path, shown)
    deps = _table(data, "project").get("dependencies", [])
    text = path.read_text(encoding="utf-8")
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise BuildError(
            "[project].dependencies must be a list of requirement strings",
            path=shown,
            line=_key_line(text, r"dependencies\s*="),
        )
    for dep in deps:
        out.append((dep, shown, _line_of(text, dep)))
    # requirements.txt's and [project]'s, read before: Poetry's table may name them again
    listed = {requirement_name(dep.strip()) for dep, _, _ in out}
    sources.warnings += _unread_dependencies(data, shown, text, listed)
    sources.warnings += _unread_uv_sources(data, shown, text)


_WHERE_TO_LIST = (
    "flash build does not read them: list them in requirements.txt, in "
    "[project].dependencies, or in @remote(..., dependencies=[...])"
)


def _unread_dependencies(
    data: dict[str, Any], shown: str, text: str, listed: Collection[str] = ()
) -> list[BuildWarning]:
    """Warnings for dependencies pyproject.toml declares where the build does not look:
    filled in by a build backend (``dynamic = ["dependencies"]``), or in Poetry's table
    (those not ``listed``: normalised names the build reads elsewhere). Without one, a
    worker would lack them and the build would say nothing."""
    found = []
    dynamic = _table(data, "project").get("dynamic", [])
    if (
        isinstance(dynamic, list)
        and "dependencies" in dynamic
        and not _dynamic_from_requirements(data)
    ):
        found.append(
            BuildWarning(
                '[project] dynamic = ["dependencies"]: these come from the build backend, and '
                + _WHERE_TO_LIST,
                path=shown,
                line=_key_line(text, r"dynamic\s*="),
            )
        )
    poetry_deps = _table(data, "tool", "poetry", "dependencies")
    names = sorted(
        name
        for name in poetry_deps
        if name.lower() != "python" and normalise_name(name) not in listed
    )
    if names:
        shown_names = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        found.append(
            BuildWarning(
                f"[tool.poetry.dependencies] ({shown_names}) is Poetry's own table; "
                + _WHERE_TO_LIST,
                path=shown,
                line=_key_line(text, r"\[tool\.poetry\.dependencies\]"),
            )
        )
    return found


def _unread_uv_sources(data: dict[str, Any], shown: str, text: str) -> list[BuildWarning]:
    """Warnings for uv's package source tables, ``[tool.uv.sources]`` and
    ``[[tool.uv.index]]``: the build runs uv without the project's configuration, so a
    package would come from elsewhere than they say, and the build would say nothing."""
    uv = _table(data, "tool", "uv")
    unread = [
        (f"{table} is uv's own table", re.escape(table))
        for key, table in (("sources", "[tool.uv.sources]"), ("index", "[[tool.uv.index]]"))
        if uv.get(key)
    ]
    unread += [
        (f"{key} in [tool.uv] is uv's own setting", rf"{re.escape(key)}\s*=")
        for key in _UV_RESOLUTION_KEYS
        if key in uv
    ]
    return [
        BuildWarning(
            f"{what}; flash build does not read it: {_OWN_SOURCES}",
            path=shown,
            # Or [tool.uv] itself, for a table written as its key (sources = {...}).
            line=_key_line(text, pattern) or _key_line(text, r"\[tool\.uv\]"),
        )
        for what, pattern in unread
    ]


# [tool.uv] settings that change what uv resolves, or where from: ignored (--no-config).
_UV_RESOLUTION_KEYS = (
    "override-dependencies",
    "constraint-dependencies",
    "index-url",
    "extra-index-url",
    "find-links",
    "no-index",
    "prerelease",
)
_OWN_SOURCES = (
    "it resolves the dependencies by name from its own package sources (--index-url, "
    "--extra-index-url, --find-links, or their lines in requirements.txt), constrained only "
    "by the -c files requirements.txt names"
)


def _dynamic_from_requirements(data: dict[str, Any]) -> bool:
    """Whether the build backend fills the dynamic dependencies in from requirements.txt
    alone, which the build reads itself: setuptools' ``file``, or the files of the
    hatch-requirements-txt hook (requirements.txt unless it says)."""
    files = _table(data, "tool", "setuptools", "dynamic", "dependencies").get("file")
    hook = _table(data, "tool", "hatch", "metadata", "hooks", "requirements_txt")
    if files is None and hook:
        files = hook.get("files", ["requirements.txt"])
    files = [files] if isinstance(files, str) else files
    return (
        isinstance(files, list)
        and bool(files)
        and all(isinstance(f, str) and posixpath.normpath(f) == "requirements.txt" for f in files)
    )


def _table(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The TOML table at ``keys`` in ``data``; an empty one where there is none."""
    table: Any = data
    for key in keys:
        table = table.get(key) if isinstance(table, dict) else None
    return table if isinstance(table, dict) else {}


# A requirement of an @remote(dependencies=[...]): the text, or the text and where it is
# written ("main.py:5 (endpoint 'cpu')"), which errors name.
Declared = str | tuple[str, str]
_DECLARED = "@remote(dependencies=...)"


def gather_requirements(root: Path, declared: Iterable[Declared]) -> list[str]:
    """Union of ``requirements.txt``, ``[project].dependencies`` and ``declared``.

    Each requirement is validated and canonicalised (normalised name, sorted extras); exact
    duplicates are dropped and the result is sorted by name. Distinct specifiers for one name are
    all kept: the resolver intersects them.
    """
    return _canonical_all(_gather(root, declared).requirements)


def _gather(root: Path, declared: Iterable[Declared]) -> _Sources:
    sources = _Sources()
    requirements_txt = root / "requirements.txt"
    if requirements_txt.is_file():
        _read_requirements_txt(requirements_txt, root, set(), sources)
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        _read_pyproject(pyproject, root, sources)
    for dep in declared:
        text, place = (dep, "") if isinstance(dep, str) else dep
        sources.requirements.append((text, f"{_DECLARED} at {place}" if place else _DECLARED, None))
    return sources


def _canonical_origins(sources: Iterable[_Source]) -> dict[str, list[str]]:
    """Each requirement of ``sources``, validated and canonical, with where it is asked for
    (``file:line``, or the @remote's place): for an error that has to say who asked for
    what. A refused one is an error at its place."""
    found: dict[str, list[str]] = {}
    for text, source, line in sources:
        where = None if source.startswith("@") else source
        origin = f" in {source}" if where is None else ""
        accepted, problem = _checked_requirement(text, origin)
        if accepted is None:
            assert problem is not None  # a refusal always says why
            raise BuildError(problem, path=where, line=line)
        if where is None:
            place = source.removeprefix(f"{_DECLARED} at ") or _DECLARED
        else:
            place = f"{source}:{line}" if line else source
        places = found.setdefault(accepted, [])
        if place not in places:
            places.append(place)
    return found


def _canonical_all(sources: Iterable[_Source]) -> list[str]:
    return _sorted_requirements(_canonical_origins(sources))


def _sorted_requirements(requirements: Iterable[str]) -> list[str]:
    return sorted(requirements, key=lambda r: (requirement_name(r), r))


def _with_file_options(options: DependencyOptions, sources: _Sources) -> DependencyOptions:
    """``options`` plus the index options of the requirements files, as pip applies them."""
    index_url = options.index_url
    if sources.index_url is not None:
        value, shown, line = sources.index_url
        if index_url is not None and index_url != value:
            # pip lets the file's win; either way one of the two would be silently ignored.
            alike = {redact(url).replace("://****@", "://") for url in (value, index_url)}
            where = " after their host (masked here)" if len(alike) == 1 else ""
            raise BuildError(
                f"--index-url {value!r} differs{where} from the build's --index-url "
                f"{index_url!r}; keep one",
                path=shown,
                line=line,
            )
        index_url = value
    new_extras = [url for url in sources.extra_index_urls if url not in options.extra_index_urls]
    new_links = [link for link in sources.find_links if link not in options.find_links]
    return replace(
        options,
        index_url=index_url,
        extra_index_urls=(*options.extra_index_urls, *dict.fromkeys(new_extras)),
        find_links=(*options.find_links, *dict.fromkeys(new_links)),
        no_index=options.no_index or sources.no_index,
        pre=options.pre or sources.pre,
    )


def requirement_name(requirement: str) -> str:
    """The normalised name a requirement starts with (the text itself if none)."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    return normalise_name(match.group(0)) if match else requirement


# --------------------------------------------------------------------------- running uv


def _uv_binary() -> str:
    try:
        import uv
    except ImportError as exc:  # pragma: no cover - uv is a declared dependency
        raise BuildError("the 'uv' package is not installed; install it with pip") from exc
    return str(uv.find_uv_bin())


def _uv_version() -> str:
    # Read from package metadata, not `uv --version`, so a cache hit never starts uv.
    import importlib.metadata  # only here: the CLI starts without it

    try:
        return importlib.metadata.version("uv")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def _uv_env() -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("UV_") or key in _UV_TRANSPORT_ENV
    }
    env["UV_NO_PROGRESS"] = "1"
    return env


def check_options(options: DependencyOptions) -> None:
    """Refuse a python_version outside MIN_PYTHON to MAX_PYTHON or malformed, or a malformed
    --exclude name: for every build, since they go into the manifest, dependencies or not
    (--platform is judged by uv, see vendor_dependencies)."""
    _check_options(options)


def _check_platform(name: str, cache_dir: Path) -> None:
    """uv is the judge of a --platform value: it parses it before doing any work, so
    compiling nothing, offline, asks it in a few ms."""
    if name == DependencyOptions().platform:
        return  # the default: no need to start uv for a project without dependencies
    args = ["pip", "compile", os.devnull, "--quiet", "--no-config", "--no-index"]
    args += ["--no-python-downloads", "--python", sys.executable]
    args += ["--cache-dir", str(_uv_cache(cache_dir)), "--python-platform", name]
    result = _run_uv(args)
    if result.returncode == 0:
        return
    # uv's own "try '--help'" would mean uv's, not flash build's.
    detail = "\n".join(
        line for line in _uv_failure(result.stderr).splitlines() if "'--help'" not in line
    )
    if "--python-platform" in detail:
        raise BuildError(f"--platform {name!r} is not a uv --python-platform value:\n{detail}")
    raise BuildError(f"cannot check --platform {name!r} with uv:\n{detail}")


def _check_options(options: DependencyOptions) -> DependencyOptions:
    _check_python_version(options.python_version)
    for name in options.exclude:
        if not _NAME.match(name):
            raise BuildError(f"exclude entry {name!r} is not a package name")
    # Local find-links directories are made absolute so the cache key means one place.
    links = tuple(
        link if "://" in link else str(Path(link).expanduser().resolve())
        for link in options.find_links
    )
    return replace(options, find_links=links)


def _check_python_version(version: str) -> None:
    # The range first: 2.7 and 4.0 are versions, only not ones the runtime runs on.
    numbers = _VERSION_NUMBERS.fullmatch(version)
    target = (int(numbers[1]), int(numbers[2])) if numbers is not None else None
    if target is not None and not MIN_PYTHON <= target <= MAX_PYTHON:
        floor, newest = (".".join(map(str, bound)) for bound in (MIN_PYTHON, MAX_PYTHON))
        beyond = f"older than {floor}" if target < MIN_PYTHON else f"newer than {newest}"
        raise BuildError(
            f"python_version {version!r} is {beyond}: the Flash runtime in the archive "
            f"runs on Python {floor} to {newest}; choose one with --python-version"
        )
    if not _PYTHON_VERSION.fullmatch(version):
        raise BuildError(f"python_version {version!r} is not a Python version like '3.11'")


def _uv_cache(cache_dir: Path) -> Path:
    """uv's cache under ``cache_dir``, both folders readable by their owner only: uv keeps
    the URLs it fetched there, path and query tokens included. Made so on every use, so a
    cache made before (or under a loose umask) is closed too."""
    uv_cache = cache_dir / "uv"
    uv_cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    for folder in (cache_dir, uv_cache):
        os.chmod(folder, 0o700)
    return uv_cache


def _common_args(options: DependencyOptions, cache_dir: Path) -> list[str]:
    args = [
        "--no-config",
        "--color",
        "never",
        "--no-python-downloads",
        "--python",
        sys.executable,
        "--cache-dir",
        str(cache_dir / "uv"),  # made private by _uv_cache
        "--python-version",
        options.python_version,
        "--python-platform",
        options.platform,
        "--only-binary",
        ":all:",
    ]
    if options.no_index:
        args.append("--no-index")
    return args  # the package sources go in uv's environment: see _index_env


# The first uv that reads several --find-links from UV_FIND_LINKS (comma-separated); older
# ones read one, or (before 0.4.19) none, and would resolve from PyPI instead.
_UV_FIND_LINKS_LIST = (0, 5, 17)


def _index_env(options: DependencyOptions) -> dict[str, str]:
    """The package sources for uv, as the variables of its options: its command line is
    anyone's to read on the machine (``ps``), and an index URL often holds a token.

    The same lists, in the same order, as ``--index-url``, ``--extra-index-url`` and
    ``--find-links`` options would be (uv reads those variables for them), so the same
    index strategy applies."""
    env = {}
    if options.index_url:
        env["UV_INDEX_URL"] = options.index_url
    extras = [_env_item(url, " ") for url in options.extra_index_urls if url]
    if extras:
        env["UV_EXTRA_INDEX_URL"] = " ".join(extras)
    links = [_env_item(link, ",") for link in options.find_links if link]
    if links:
        version = tuple(int(part) for part in re.findall(r"\d+", _uv_version())[:3])
        if version and version < _UV_FIND_LINKS_LIST:
            wanted = ".".join(map(str, _UV_FIND_LINKS_LIST))
            raise BuildError(
                f"--find-links needs uv {wanted} or newer (this is uv {_uv_version()}): "
                "upgrade it (pip install -U uv)"
            )
        env["UV_FIND_LINKS"] = ",".join(links)
    return env


def _env_item(source: str, separator: str) -> str:
    """``source`` as an item of a ``separator``-separated variable: percent-encoded where
    it holds the separator (a local path as a ``file:`` URL, which uv reads as the path)."""
    if separator not in source:
        return source
    if "://" in source:
        return source.replace(separator, f"%{ord(separator):02X}")
    return Path(source).absolute().as_uri()


def source_urls(options: DependencyOptions) -> tuple[str, ...]:
    """Every package index and find-links location of ``options``."""
    index = (options.index_url,) if options.index_url else ()
    return (*index, *options.extra_index_urls, *options.find_links)


def _uv_failure(stderr: str) -> str:
    """uv's explanation, without colours, progress noise or warnings about Python downloads,
    its URLs masked (see mask_uv_urls)."""
    lines = mask_uv_urls(_ANSI.sub("", stderr)).splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), None)
    kept = lines[start:] if start is not None else lines
    return "\n".join(f"  {line}" for line in kept if line.strip())


def _implicated(requirements: Sequence[str], detail: str) -> list[str]:
    """The requested requirements whose names occur in uv's explanation."""
    text = detail.lower()
    found = []
    for requirement in requirements:
        name = requirement_name(requirement)
        if re.search(rf"(?<![a-z0-9._-]){re.escape(name)}(?![a-z0-9_-])", text):
            found.append(requirement)
    return found


def _run_uv(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_uv_binary(), *args],
        capture_output=True,
        text=True,
        env={**_uv_env(), **(env or {})},
        check=False,
    )


def _cache_key(payload: dict[str, Any]) -> str:
    payload = {**payload, "uv": _uv_version(), "format": _CACHE_FORMAT}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- resolving


# A line of `uv pip compile` output that pins a package: a name, then a version or a URL.
_PIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?\s*(?:==|@|\[|;)")


def _compile(
    requirements: Sequence[str],
    constraints: Sequence[str],
    options: DependencyOptions,
    cache_dir: Path,
    refresh: bool,
    excluded: list[str],
) -> subprocess.CompletedProcess[str]:
    """``uv pip compile`` of the requirements, without the ``excluded`` packages."""
    with tempfile.TemporaryDirectory(prefix="flash-resolve-") as tmp:
        req_file = Path(tmp) / "requirements.in"
        req_file.write_text("\n".join(requirements) + "\n", encoding="utf-8")
        args = ["pip", "compile", str(req_file), "--no-header", "--no-annotate"]
        args += _common_args(options, cache_dir)
        if options.no_deps:
            args.append("--no-deps")
        if options.pre:
            args += ["--prerelease", "allow"]
        if refresh:
            args.append("--refresh")
        if constraints:
            constraints_file = Path(tmp) / "constraints.txt"
            constraints_file.write_text("\n".join(constraints) + "\n", encoding="utf-8")
            args += ["--constraints", str(constraints_file)]
        if excluded:
            excludes = Path(tmp) / "excludes.txt"
            excludes.write_text("\n".join(excluded) + "\n", encoding="utf-8")
            args += ["--excludes", str(excludes)]
        return _run_uv(args, _index_env(options))


def _pin_name(line: str) -> str | None:
    """The normalised name a line of ``uv pip compile`` output pins, if it pins one."""
    found = _PIN.match(line.strip())
    return normalise_name(re.split(r"\s*(?:==|@|\[|;)", found.group(0))[0]) if found else None


def _parse_pins(output: str) -> list[str]:
    """Pins from `uv pip compile` output, names normalised (``Foo_Bar==1`` -> ``foo-bar==1``)."""
    pins = set()
    for raw in output.splitlines():
        line = re.sub(r"\s+#.*$", "", raw).strip()
        if not line or line.startswith(("#", "-")):
            continue
        pin = _checked_requirement(line)[0] if _PIN.match(line) else None
        if pin is None:
            # Not a pin: installing it would fail, and a cached one would fail every build.
            raise BuildError(
                mask_config_urls(
                    f"uv resolved the dependencies to {line!r}, which is no pinned package "
                    "flash build can install; require the package by name (a local wheel: "
                    "put its folder on --find-links)"
                )
            )
        pins.add(pin)  # canonical: ``foo-bar==1``, ``alpha @ file:///...``
    return sorted(pins)


def resolve(
    requirements: Sequence[str],
    options: DependencyOptions,
    cache_dir: Path,
    constraints: Sequence[str] = (),
    origins: Mapping[str, Sequence[str]] | None = None,
    refresh: bool = False,
) -> list[str]:
    """Exact pins (``name==version``, sorted) for the target interpreter and platform.

    ``constraints`` limit versions without requiring anything (pip's ``-c``). Packages named in
    ``options.exclude`` are left out together with the dependencies only they need (they come
    with the base image). Raises ``BuildError`` naming the requirements that cannot be
    satisfied, and where ``origins`` (requirement or constraint: places) says each was asked for.

    With ``refresh``, the cached resolution is not read, and uv fetches the package sources
    anew (``--refresh``): a version published since is found; the new pins are cached.
    """
    with masking_indexes(source_urls(options)):
        wheels = _local_wheels(options.find_links)
        return _resolve(
            requirements, options, cache_dir, constraints, origins or {}, wheels, refresh
        )[0]


# uv's warning for an extra a package does not provide, which it leaves out of the
# resolution: `The package `tinyc==1.0` does not have an extra named `fats``.
_UNKNOWN_EXTRA = re.compile(r"package `?([^`\s]+?)`? does not have an extra named `?([^`\s]+?)`?$")

# (the package as uv names it, ``tinyc==1.0``; the extra it does not have)
_UnknownExtra = tuple[str, str]


def _resolve(
    requirements: Sequence[str],
    options: DependencyOptions,
    cache_dir: Path,
    constraints: Sequence[str],
    origins: Mapping[str, Sequence[str]],
    wheels: Sequence[LocalWheel],
    refresh: bool = False,
) -> tuple[list[str], list[_UnknownExtra]]:
    """:func:`resolve`'s pins, and the extras asked for that their packages do not have;
    ``wheels``, the local wheels of ``options.find_links``."""
    if not requirements:
        return [], []
    _uv_cache(cache_dir)  # before the cache is read: one made before gets closed too
    options = _check_options(options)
    key = _cache_key(
        {
            "requirements": sorted(set(requirements)),
            "constraints": sorted(set(constraints)),
            "options": asdict(options),
        }
    )
    cache_file = cache_dir / "resolve" / f"{key}.json"
    cached: Any = None if refresh else _read_json(cache_file)
    try:
        pins = [str(pin) for pin in cached["pins"]]
        unknown = [(str(pkg), str(extra)) for pkg, extra in cached["unknown_extras"]]
        # A local wheel rewritten under its version may require other packages now.
        if not _rewritten(_local_wheel_stats(pins, wheels), cached.get("local_wheels")):
            return pins, unknown
    except (ValueError, KeyError, TypeError, AttributeError):
        pass  # missing or unreadable: resolve again

    excluded = list(options.exclude)
    while True:
        result = _compile(requirements, constraints, options, cache_dir, refresh, excluded)
        if result.returncode != 0:
            detail = _uv_failure(result.stderr)
            culprits = _implicated(requirements, detail)
            target = f"Python {options.python_version} on {options.platform}"
            which = f" for {', '.join(culprits)}" if culprits else ""
            message = f"cannot resolve dependencies{which} ({target}):\n{detail}"
            asked = [f"  {req}: {', '.join(origins[req])}" for req in culprits if req in origins]
            if asked:
                message += "\nasked for by:\n" + "\n".join(asked)
            # A constraints file can be the other side of a conflict: say where it is too.
            limits = [
                f"  {con}: {', '.join(origins[con])}"
                for con in _implicated(constraints, detail)
                if con in origins and con not in culprits
            ]
            if limits:
                message += "\nconstrained by:\n" + "\n".join(limits)
            raise BuildError(message)
        # Flash itself never goes in, asked for directly (see vendor_dependencies) or by a
        # dependency: resolved again without it and what only it needs, as --exclude leaves
        # packages out (only then: uv's --excludes is recent).
        pinned = {_pin_name(line) for line in result.stdout.splitlines()}
        if "flash" in excluded or "flash" not in pinned:
            break
        excluded.append("flash")

    pins = _parse_pins(result.stdout)
    unknown = _unknown_extras(result.stderr)
    if any(redact(pin) != pin for pin in pins):
        # A URL pin on an index's host (`pkg @ https://host/TOKEN/pkg.whl`): installing it
        # needs the real URL, which the build writes nowhere, so it is resolved again.
        return pins, unknown
    # Only the pins are read back: the rest is for people. No options: they are the
    # package sources, whose URLs can hold tokens; any left in a requirement are masked.
    shown = {"requirements": list(requirements), "constraints": list(constraints)}
    # Not ASCII-escaped: a host is masked as it is written (an IDN one too).
    record = json.loads(redact(json.dumps(shown, ensure_ascii=False)))
    record["pins"] = pins
    record["unknown_extras"] = unknown
    record["local_wheels"] = _local_wheel_stats(pins, wheels)  # what the pins were made from
    _write_atomic(cache_file, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return pins, unknown


def _unknown_extras(stderr: str) -> list[_UnknownExtra]:
    """The extras uv says it left out of a resolution: their packages do not have them."""
    found = (_UNKNOWN_EXTRA.search(line.strip()) for line in _ANSI.sub("", stderr).splitlines())
    return sorted({(match[1], match[2]) for match in found if match is not None})


# --------------------------------------------------------------------------- installing


def _record_rows(dist_info: Path) -> list[list[str]]:
    record = dist_info / "RECORD"
    if not record.is_file():
        return []
    return [row for row in csv.reader(io.StringIO(record.read_text(encoding="utf-8"))) if row]


def _prune_record(dist_info: Path, site_dir: Path) -> None:
    """Drop RECORD rows for files we deleted, so RECORD lists exactly what ships."""
    record = dist_info / "RECORD"
    if not record.is_file():
        return
    kept = [row for row in _record_rows(dist_info) if (site_dir / row[0]).exists()]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(kept)
    # Write a new file rather than editing in place: installed files may be hard links into
    # uv's cache, which must not change.
    record.unlink()
    record.write_text(out.getvalue(), encoding="utf-8")


def _strip_site(site_dir: Path) -> None:
    """Remove what a worker never needs and what would make archives differ between builds."""
    shutil.rmtree(site_dir / "bin", ignore_errors=True)  # scripts with host-specific shebangs
    (site_dir / ".lock").unlink(missing_ok=True)
    for cache in sorted(site_dir.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)
    for compiled in site_dir.rglob("*.pyc"):
        compiled.unlink()
    for dist_info in site_dir.glob("*.dist-info"):
        # uv_cache.json holds an install timestamp.
        (dist_info / "uv_cache.json").unlink(missing_ok=True)
        # The URL a package was installed from (PEP 610), which no worker reads: gone where
        # it is on an index's host, whose token it may hold.
        # And where it is a file of this machine (``pkg @ file:///home/me/pkg.whl``): its
        # path would make the archives of one project differ from machine to machine.
        direct_url = dist_info / "direct_url.json"
        if direct_url.is_file():
            text = direct_url.read_text(encoding="utf-8", errors="replace")
            if redact(text) != text or _is_local_url(text):
                direct_url.unlink()
        _prune_record(dist_info, site_dir)


def _is_local_url(direct_url: str) -> bool:
    """Whether a direct_url.json names a file or folder of this machine (``file:``)."""
    try:
        url = json.loads(direct_url).get("url", "")
    except (ValueError, AttributeError):
        return True  # unreadable: nothing a worker reads, and it may hold a path
    return not isinstance(url, str) or url.lower().startswith("file:")


# A wheel in a local --find-links folder: its package's normalised name, its version, path,
# size and modification time, what tells it was rewritten without reading it (a wheel may be
# gigabytes).
LocalWheel = tuple[str, str, str, int, int]


def _local_wheel_stats(pins: Sequence[str], wheels: Sequence[LocalWheel]) -> list[list[Any]]:
    """The name, path, size and modification time of each of the local ``wheels`` of a
    pinned package."""
    pinned = {
        (normalise_name(match[1]), match[2])
        for match in (re.match(r"^([^=@;\s]+)\s*==\s*([^;\s]+)", pin) for pin in pins)
        if match is not None
    }
    return [
        [name, path, size, mtime]
        for name, version, path, size, mtime in wheels
        if (name, version) in pinned
    ]


def _local_wheels(find_links: Sequence[str]) -> list[LocalWheel]:
    """Each wheel in the local ``find_links`` folders (or given as a file), sorted."""
    return _wheels_in(_local_paths(find_links))


def _wheels_in(paths: Iterable[Path]) -> list[LocalWheel]:
    """Each wheel in the folders ``paths`` (or one of them), sorted."""
    found = []
    for folder in paths:
        wheels = sorted(folder.glob("*.whl")) if folder.is_dir() else [folder]
        for wheel in wheels:
            name, _, version = wheel.name.partition("-")
            with contextlib.suppress(OSError):  # gone since: uv says so, if it matters
                stat = wheel.stat()
                found.append(
                    (
                        normalise_name(name),
                        version.split("-", 1)[0],
                        str(wheel),
                        stat.st_size,
                        stat.st_mtime_ns,
                    )
                )
    return sorted(found)


def _local_paths(find_links: Sequence[str]) -> list[Path]:
    """The local ``find_links`` (folders, or wheels), absolute, each once."""
    paths = []
    for link in find_links:
        if link.lower().startswith("file://"):
            link = url2pathname(urlsplit(link).path)
        elif "://" in link:
            continue  # an index on the network: its files' versions are its own
        paths.append(Path(link).expanduser().resolve())
    return list(dict.fromkeys(paths))


def local_find_links(root: Path, options: DependencyOptions) -> list[Path]:
    """The local --find-links folders (or wheels) of the build, absolute: its options', and
    those its requirement files name (pyproject.toml cannot)."""
    sources = _Sources()
    requirements_txt = root / "requirements.txt"
    try:
        if requirements_txt.is_file():
            _read_requirements_txt(requirements_txt, root, set(), sources)
    except (BuildError, OSError, ValueError):
        pass  # the dependency stage reports what is wrong with the files
    return _local_paths([*options.find_links, *sources.find_links])


def local_wheels(root: Path, options: DependencyOptions) -> list[LocalWheel]:
    """The wheels in the local --find-links folders of the build (see local_find_links),
    listed once a build: such a folder need not be archived (dist/, outside the project,
    ignored), so the project's files do not show a wheel rewritten, added or removed there
    (see local_wheels_fingerprint), and the dependency stage reads them (see
    vendor_dependencies)."""
    return _wheels_in(local_find_links(root, options))


def local_wheels_fingerprint(wheels: Sequence[LocalWheel]) -> str:
    """What changes when one of the local ``wheels`` is rewritten, added or removed."""
    return hashlib.sha256(json.dumps(list(wheels)).encode()).hexdigest()


def _rewritten(stats: Sequence[Sequence[Any]], recorded: Any) -> bool:
    """Whether a local wheel of ``stats`` (see _local_wheel_stats) is not the one
    ``recorded`` (the stats a cached result was made from) holds: rebuilt under its version
    (`pip wheel ./mylib -w wheels`), or new. One gone since is no change: the cached result
    is all that is left of it."""
    try:
        by_path = {row[1]: row for row in recorded}
    except (TypeError, IndexError, KeyError):
        by_path = {}  # unreadable: as if made from none
    return any(by_path.get(row[1]) != list(row) for row in stats)


def _read_json(path: Path) -> Any:
    """The JSON value of ``path``; None where it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def install(
    pins: Sequence[str], options: DependencyOptions, cache_dir: Path, refresh: bool = False
) -> Path:
    """Install ``pins`` (already complete) for the target; return the cached site directory.

    With ``refresh``, the cached site directory is not used and uv reinstalls every pin from
    its source (``--reinstall``): a wheel rewritten under the same version is found; the new
    site directory replaces the cached one."""
    with masking_indexes(source_urls(options)):
        return _install(pins, options, cache_dir, _local_wheels(options.find_links), refresh)


def _install(
    pins: Sequence[str],
    options: DependencyOptions,
    cache_dir: Path,
    wheels: Sequence[LocalWheel],
    refresh: bool = False,
) -> Path:
    """:func:`install`, with ``wheels`` the local wheels of ``options.find_links``."""
    _uv_cache(cache_dir)
    options = _check_options(options)
    local_wheels = _local_wheel_stats(pins, wheels)
    key = _cache_key(
        {
            "pins": sorted(set(pins)),
            "python_version": options.python_version,
            "platform": options.platform,
            # The same pin can be a different file on another index (e.g. CUDA builds).
            "index_url": options.index_url,
            "extra_index_urls": list(options.extra_index_urls),
            "find_links": list(options.find_links),
            "no_index": options.no_index,
        }
    )
    site_root = cache_dir / "site"
    final = site_root / key
    # The local wheels it was installed from, beside it (the site directory is archived).
    wheels_file = site_root / f"{key}.wheels.json"
    if final.is_dir() and not refresh and not _rewritten(local_wheels, _read_json(wheels_file)):
        return final
    site_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=site_root, prefix=f".tmp-{key[:16]}-"))
    try:
        if pins:
            req_file = staging.with_name(staging.name + ".txt")
            req_file.write_text("\n".join(pins) + "\n", encoding="utf-8")
            try:
                args = ["pip", "install", "--target", str(staging), "-r", str(req_file)]
                args += ["--no-deps", *_common_args(options, cache_dir)]
                if refresh:
                    args.append("--reinstall")
                # uv's cache keeps a find-links wheel by its name: read the file again.
                for name in sorted({str(entry[0]) for entry in local_wheels}):
                    args += ["--refresh-package", name]
                result = _run_uv(args, _index_env(options))
            finally:
                req_file.unlink(missing_ok=True)
            if result.returncode != 0:
                detail = _uv_failure(result.stderr)
                culprits = _implicated(pins, detail)
                which = ", ".join(culprits) or "dependencies"
                target = f"Python {options.python_version} on {options.platform}"
                message = f"cannot install {which} ({target}):\n{detail}"
                raise BuildError(message)
            _strip_site(staging)
            _check_shared_files(staging)  # once per install, not at every rebuild
        _write_atomic(wheels_file, json.dumps(local_wheels) + "\n")
        if final.is_dir():  # stale (see above): set it aside, a rename is atomic
            stale = Path(tempfile.mkdtemp(dir=site_root, prefix=f".old-{key[:16]}-"))
            with contextlib.suppress(OSError):  # a concurrent build moved it first
                final.rename(stale / "site")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            staging.rename(final)
        except OSError:
            if not final.is_dir():  # not a concurrent build finishing first
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


# --------------------------------------------------------------------------- reporting


def _metadata_values(dist_info: Path, name: str) -> list[str]:
    """The values of the header ``name`` (``Name``, ``Provides-Extra``) of a METADATA file."""
    metadata = dist_info / "METADATA"
    found = []
    if metadata.is_file():
        for line in metadata.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                break  # the headers end; the description follows
            if line.lower().startswith(f"{name.lower()}:"):
                found.append(line.split(":", 1)[1].strip())
    return found


def _metadata_field(dist_info: Path, name: str) -> str | None:
    """The value of the header ``name`` (``Name``, ``Version``) of a METADATA file, if any."""
    return next(iter(_metadata_values(dist_info, name)), None)


def _dist_name(dist_info: Path) -> str:
    name = _metadata_field(dist_info, "Name")
    return normalise_name(name or dist_info.name.rsplit("-", 1)[0])


def _dist_pin(dist_info: Path) -> str:
    """``name==version`` of an installed distribution."""
    version = _metadata_field(dist_info, "Version") or dist_info.name[: -len(".dist-info")]
    return f"{_dist_name(dist_info)}=={version.rsplit('-', 1)[-1]}"


def _check_shared_files(site_dir: Path) -> None:
    """Refuse a file two installed distributions ship with other contents (as
    opencv-python and opencv-python-headless both ship cv2/): the site directory holds the
    one uv happened to install last, so the same inputs would give different archives. The
    same contents in both (their RECORDs' hashes agree) make no difference, and neither
    does the ``__init__.py`` of a namespace package the distributions share (backports/,
    each declaring it in its own words): it is written anew, one way for all."""
    claims: dict[str, tuple[str, str]] = {}  # path: (hash, the first distribution's pin)
    clashes: dict[str, tuple[str, str]] = {}  # path: the two distributions' pins
    for dist_info in sorted(site_dir.glob("*.dist-info")):
        pin = _dist_pin(dist_info)
        for row in _record_rows(dist_info):
            if len(row) < 2 or not row[1]:
                continue  # RECORD itself: one in each .dist-info
            path = posixpath.normpath(row[0])
            digest, first = claims.setdefault(path, (row[1], pin))
            if digest != row[1] and first != pin:
                clashes.setdefault(path, (first, pin))
    folders = [posixpath.dirname(path) for path in clashes]
    for path, (first, second) in sorted(clashes.items()):
        shared_namespace = (
            posixpath.basename(path) == "__init__.py"
            and folders.count(posixpath.dirname(path)) == 1  # their modules there differ
            and _declares_namespace(site_dir / path)
        )
        if shared_namespace:
            (site_dir / path).write_text(_NAMESPACE_INIT, encoding="utf-8")
            continue
        raise BuildError(
            f"{first} and {second} both ship {path!r}, with other contents: the archive "
            "would hold either one, by install order; keep one of them: "
            f"{_keeping(first, second, site_dir)}; {_keeping(second, first, site_dir)} (an "
            "excluded package is not vendored: the base image provides it)"
        )


def _keeping(kept: str, other: str, site_dir: Path) -> str:
    """How to keep the file of ``kept`` (a pin), leaving ``other`` out: ``--exclude`` it, or
    drop it from the dependencies, where no other distribution requires it."""
    name = other.split("==", 1)[0]
    exclude = f"build with `flash build --exclude {name}`"
    parents = sorted({_dist_name(dist_info) for dist_info, _ in requirers(site_dir, name)})
    if parents:  # dropped from the requirements, it would come back with them
        return f"to keep {kept}'s, {exclude} ({', '.join(parents)} requires it)"
    return f"to keep {kept}'s, drop {name} from the dependencies or {exclude}"


def requirers(site_dir: Path, name: str) -> list[tuple[Path, str]]:
    """Each installed distribution's .dist-info folder whose METADATA requires ``name``,
    with the requirement (``Requires-Dist``)."""
    wanted = normalise_name(name)
    return [
        (dist_info, requirement)
        for dist_info in sorted(site_dir.glob("*.dist-info"))
        for requirement in _metadata_values(dist_info, "Requires-Dist")
        if requirement_name(requirement) == wanted
    ]


# What each distribution sharing a pkgutil or pkg_resources namespace package writes as its
# __init__.py, in words of its own; all of its modules are in the one folder here.
_NAMESPACE_INIT = '__path__ = __import__("pkgutil").extend_path(__path__, __name__)\n'


def _declares_namespace(init: Path) -> bool:
    """Whether a package's ``__init__.py`` only declares a namespace package: a few lines
    calling pkgutil's extend_path or pkg_resources' declare_namespace, and comments."""
    try:
        text = init.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    code = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    joined = "\n".join(code)
    return len(code) <= 4 and ("extend_path" in joined or "declare_namespace" in joined)


def top_level_names(site_dir: Path) -> dict[str, tuple[str, str]]:
    """The top-level import names the installed distributions provide, each with its kind
    (see :func:`import_names`) and its distribution's name, from their RECORDs."""
    names: dict[str, tuple[str, str]] = {}
    for dist_info in sorted(site_dir.glob("*.dist-info")):
        dist = _dist_name(dist_info)
        for name, (kind, _) in import_names(row[0] for row in _record_rows(dist_info)).items():
            if name not in names or kind == "package":  # a package wins over a portion
                names[name] = (kind, dist)
    return names


_CODE_SUFFIXES = (".py", ".so", ".pyd")


def import_names(paths: Iterable[str]) -> dict[str, tuple[str, str]]:
    """The top-level import names that files at ``paths`` (relative to one ``sys.path``
    entry) provide, each with its kind and where it is (``mod.py``, ``pkg/``): "module"
    (``mod.py``), "extension" (``ext.cpython-311-x86_64-linux-gnu.so``), "package" (with an
    ``__init__``) or "namespace" (a folder of modules without one). Metadata, scripts and
    data provide none."""
    names: dict[str, tuple[str, str]] = {}
    for path in paths:
        top, _, rest = path.partition("/")
        if not (rest or top).endswith(_CODE_SUFFIXES):
            continue
        name = top if rest else top.split(".", 1)[0]
        if not name.isidentifier():  # *.dist-info, *.data, ...
            continue
        if not rest:
            names.setdefault(name, ("module" if top.endswith(".py") else "extension", top))
        elif rest.startswith("__init__."):
            names[name] = ("package", top + "/")
        elif names.get(name, ("",))[0] != "package":
            names[name] = ("namespace", top + "/")
    return names


def file_owners(site_dir: Path) -> dict[str, str]:
    """Each installed file (posix, relative to ``site_dir``) with the name of the
    distribution whose RECORD lists it."""
    owners: dict[str, str] = {}
    for dist_info in sorted(site_dir.glob("*.dist-info")):
        name = _dist_name(dist_info)
        for row in _record_rows(dist_info):
            owners.setdefault(posixpath.normpath(row[0]), name)
    return owners


def package_sizes(site_dir: Path) -> list[tuple[str, int]]:
    """(distribution name, total bytes of its installed files), largest first."""
    site = site_dir.resolve()
    sizes: dict[str, int] = {}
    counted: set[Path] = set()
    for dist_info in sorted(site.glob("*.dist-info")):
        name = _dist_name(dist_info)
        total = 0
        for row in _record_rows(dist_info):
            path = (site / row[0]).resolve()
            if path in counted or not path.is_relative_to(site) or not path.is_file():
                continue
            counted.add(path)
            total += path.stat().st_size
        sizes[name] = sizes.get(name, 0) + total
    return sorted(sizes.items(), key=lambda item: (-item[1], item[0]))


# --------------------------------------------------------------------------- pipeline entry


def vendor_dependencies(
    root: Path,
    declared: Iterable[Declared],
    options: DependencyOptions,
    cache_dir: Path,
    refresh: bool = False,
    wheels: Sequence[LocalWheel] | None = None,
) -> ResolvedDependencies:
    """Gather, resolve and install the project's dependencies for the target; with
    ``refresh`` (``flash build --force``), resolved and installed anew, not from the cache.
    ``wheels``: the build's :func:`local_wheels`, where it has them listed already."""
    sources = _gather(root, declared)
    file_index = (sources.index_url[0],) if sources.index_url else ()
    named = (*file_index, *sources.extra_index_urls, *sources.find_links)
    with masking_indexes((*source_urls(options), *named)):
        # Flash itself never goes in: the archive carries its own runtime, and the SDK with
        # its dependency tree is not needed on a worker.
        origins = _canonical_origins(sources.requirements)
        requirements = [
            req
            for req in _sorted_requirements(origins)
            if normalise_name(requirement_name(req)) != "flash"
        ]
        constraint_origins = _canonical_origins(sources.constraints)
        constraints = _sorted_requirements(constraint_origins)
        for constraint, places in constraint_origins.items():  # for a conflict's message
            known = origins.setdefault(constraint, [])
            known += [place for place in places if place not in known]
        options = _with_file_options(options, sources)
        if wheels is None:
            wheels = _local_wheels(options.find_links)
        if not requirements:  # resolve() would pass --platform to uv; here nothing else does
            _check_platform(options.platform, cache_dir)
        pins, unknown = _resolve(
            requirements, options, cache_dir, constraints, origins, wheels, refresh
        )
        site_dir = _install(pins, options, cache_dir, wheels, refresh) if pins else None
        warnings = list(sources.warnings)
        warnings += _unknown_extra_warnings(unknown, requirements, origins, site_dir)
        warnings += _unmatched_excludes(
            requirements, constraints, pins, site_dir, options, cache_dir, wheels
        )
    excluded = tuple(sorted({normalise_name(name) for name in options.exclude}))
    warnings += _requires_python_warnings(root, options.python_version)
    warnings += _lock_warnings(root, pins)
    return ResolvedDependencies(
        requirements=tuple(requirements),
        pins=tuple(pins),
        excluded=excluded,
        site_dir=site_dir,
        index_urls=source_urls(options),
        warnings=tuple(warnings),
    )


def _unknown_extra_warnings(
    unknown: Iterable[_UnknownExtra],
    requirements: Iterable[str],
    origins: Mapping[str, Sequence[str]],
    site_dir: Path | None,
) -> list[BuildWarning]:
    """A warning for each extra asked for that its package does not have (a misspelling,
    often): uv leaves it out, and what it would add is not vendored. Says who asks for it,
    and the extras the package has."""
    found = []
    for package, extra in unknown:
        name = requirement_name(package)
        askers = [
            f"{req} ({', '.join(origins.get(req, ()))})" if origins.get(req) else req
            for req in requirements
            if requirement_name(req) == name and normalise_name(extra) in _requirement_extras(req)
        ]
        provided = _provided_extras(site_dir, name)
        extras = f"; its extras: {', '.join(provided)}" if provided else ""
        # Not the project's own: a dependency asks for it, and only its maintainers can fix it.
        asked = (
            f"; asked for by {', '.join(askers)}: check its spelling{extras}"
            if askers
            else f"; a dependency asks for it{extras}"
        )
        found.append(
            BuildWarning(
                f"{package.replace('==', ' ', 1)} has no extra named {extra!r}, so what it "
                f"would add is not vendored{asked}"
            )
        )
    return found


def _requirement_extras(requirement: str) -> set[str]:
    """The normalised extras of a canonical requirement (``name[a,b]...``)."""
    found = _REGEX_REQUIREMENT.match(requirement.strip())
    return {normalise_name(extra) for extra in _split_extras(found and found["extras"])}


def _provided_extras(site_dir: Path | None, name: str) -> list[str]:
    """The extras (``Provides-Extra``) of the installed distribution ``name``."""
    for dist_info in sorted(site_dir.glob("*.dist-info")) if site_dir else ():
        if _dist_name(dist_info) == name:
            return sorted(set(_metadata_values(dist_info, "Provides-Extra")))
    return []


def _requirement_names(requirements: Iterable[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        found = _REGEX_REQUIREMENT.match(requirement.strip())
        if found is not None:
            names.add(normalise_name(found["name"]))
    return names


def _unmatched_excludes(
    requirements: Sequence[str],
    constraints: Sequence[str],
    pins: Sequence[str],
    site_dir: Path | None,
    options: DependencyOptions,
    cache_dir: Path,
    wheels: Sequence[LocalWheel],
) -> list[BuildWarning]:
    """A warning for each ``--exclude`` name that no package of the dependencies has (a
    misspelling, often): left unsaid, the package it meant is vendored after all.

    Known from the requirements and what the installed packages require; a name found in
    neither may still be needed only by another excluded package, so then (only then) the
    dependencies are resolved without exclusions, a second uv run, cached as any."""
    wanted = {normalise_name(name): name for name in options.exclude}
    found = _requirement_names(requirements) | {_pin_name(pin) or "" for pin in pins}
    for dist_info in sorted(site_dir.glob("*.dist-info")) if site_dir else ():
        metadata = dist_info / "METADATA"
        text = metadata.read_text(encoding="utf-8", errors="replace") if metadata.is_file() else ""
        found |= _requirement_names(re.findall(r"(?im)^Requires-Dist:\s*(.+)$", text))
    unmatched = sorted(wanted.keys() - found)
    if unmatched and requirements and not options.no_deps:
        try:
            everything, _ = _resolve(
                requirements, replace(options, exclude=()), cache_dir, constraints, {}, wheels
            )
        except BuildError:
            return []  # what the exclusion avoids may not resolve: nothing to compare with
        unmatched = sorted(set(unmatched) - {_pin_name(pin) for pin in everything})
    return [
        BuildWarning(
            f"--exclude {wanted[name]} matches no package the dependencies resolve to; "
            "check its spelling (it is left out of nothing)"
        )
        for name in unmatched
    ]


def _requires_python_warnings(root: Path, target: str) -> list[BuildWarning]:
    """A warning when ``[project] requires-python`` excludes the target Python: the project
    says it does not run there, and the build would not say so otherwise."""
    pyproject = root / "pyproject.toml"
    requirement = _packaging_requirement()
    if requirement is None or not pyproject.is_file():
        return []  # packaging is what reads the specifier; it is optional
    shown = _display_path(pyproject, root)
    spec = _table(load_toml(pyproject, shown), "project").get("requires-python")
    if not isinstance(spec, str):
        return []
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        allowed = SpecifierSet(spec)
    except InvalidSpecifier:
        return []  # uv and build backends say what is wrong with it
    # A target of 3.11 is any 3.11.x: excluded only if every release of it is.
    versions = [target] if target.count(".") == 2 else [f"{target}.{n}" for n in range(100)]
    if any(allowed.contains(version, prereleases=True) for version in versions):
        return []
    text = pyproject.read_text(encoding="utf-8", errors="replace")
    return [
        BuildWarning(
            f"[project] requires-python {spec!r} excludes the target Python {target}; "
            "choose a target it allows with --python-version, or widen requires-python",
            path=shown,
            line=_key_line(text, r"requires-python\s*="),
        )
    ]


# Lock files flash build does not read, with how to turn each into requirements.txt.
_LOCK_EXPORTS = {
    "uv.lock": "uv export --no-hashes -o requirements.txt",
    "poetry.lock": "poetry export --without-hashes -o requirements.txt",
    "Pipfile.lock": "pipenv requirements > requirements.txt",
    "pylock.toml": "",
}


def lock_file_paths(root: Path) -> list[Path]:
    """The lock files of ``root`` the build reads for its warnings (see _lock_warnings): a
    dependency input, so that editing one makes the build look at it again."""
    return [root / name for name in _LOCK_EXPORTS if (root / name).is_file()]


def _lock_versions(path: Path) -> dict[str, set[str]] | None:
    """The versions ``path`` locks, by normalised name; None where it cannot be read. A
    name may have several: a uv.lock forks its resolution by markers (one version for
    Python < 3.12, another for the rest)."""
    found: dict[str, set[str]] = {}
    try:
        if path.name == "Pipfile.lock":
            data = json.loads(path.read_text(encoding="utf-8"))
            for name, entry in data.get("default", {}).items():
                if isinstance(entry, dict) and "version" in entry:
                    version = str(entry["version"]).removeprefix("==")
                    found.setdefault(normalise_name(name), set()).add(version)
            return found
        data = load_toml(path, path.name)
    except (OSError, ValueError, AttributeError, BuildError):
        return None
    packages = data.get("packages" if path.name == "pylock.toml" else "package", [])
    if not isinstance(packages, list):
        return None
    for entry in packages:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and "version" in entry:
            found.setdefault(normalise_name(entry["name"]), set()).add(str(entry["version"]))
    return found


def _lock_warnings(root: Path, pins: Sequence[str]) -> list[BuildWarning]:
    """A warning for each lock file of ``root`` whose versions the build does not vendor:
    the build never reads one, so a user who relies on it would get other versions."""
    found = []
    resolved = {}
    for pin in pins:
        version = re.match(r"^[^=@;]+==\s*([^;\s]+)", pin)
        if version is not None:
            resolved[_pin_name(pin)] = version[1]
    for path in lock_file_paths(root):
        name, export = path.name, _LOCK_EXPORTS[path.name]
        locked = _lock_versions(path)
        differ = sorted(
            f"{pkg} {resolved[pkg]} ({name}: {' or '.join(sorted(versions))})"
            for pkg, versions in (locked or {}).items()
            if pkg in resolved and resolved[pkg] not in versions
        )
        if locked is not None and not differ:
            continue  # it agrees with what is vendored (a requirements.txt exported from it)
        how = f" (`{export}`)" if export else ""
        differs = (
            f"the versions it vendors differ from the lock's: {', '.join(differ[:5])}"
            + (" ..." if len(differ) > 5 else "")
            if differ
            else "its versions may differ from the lock's"
        )
        found.append(
            BuildWarning(
                "flash build does not read this lock file: it resolves requirements.txt, "
                f"[project].dependencies and @remote(dependencies=[...]), and {differs}; "
                f"to build with the lock's versions, export them to requirements.txt{how}",
                path=name,
            )
        )
    return found
